# shellcheck shell=bash
# Apache Kafka in KRaft mode (one node that is both broker and controller), run from the
# jars on Maven Central (scripts/maven/kafka/pom.xml): Apache ships no Debian package.

KAFKA_VERSION=4.3.1
KAFKA_PORT=9092
KAFKA_CONTROLLER_PORT=9093
# Start-up is ~10 s (3 s more for the first-start format) on a loaded 2-core box; the
# margin is for a cold page cache and a machine busy compiling.
# shellcheck disable=SC2034 # read indirectly by timeout_of in ./dev
kafka_START_TIMEOUT=180

kafka_version() { echo "$KAFKA_VERSION"; }
kafka_installed() { pkg_installed kafka "$KAFKA_VERSION" && command -v java >/dev/null; }
kafka_addr() { echo "127.0.0.1:$KAFKA_PORT"; }
kafka_env() { echo "KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:$KAFKA_PORT"; }

kafka_install() {
  local dir libs log
  dir=$(pkg_dir kafka "$KAFKA_VERSION")
  libs=$dir/libs
  log=$(logfile install-kafka)
  command -v java >/dev/null || apt_ensure openjdk-17-jre-headless || return 1
  command -v mvn >/dev/null || apt_ensure maven || return 1
  # Copy into a scratch folder first so an interrupted download never looks installed.
  rm -rf "$libs.tmp"
  with_progress "downloading Kafka $KAFKA_VERSION jars from Maven Central (~55 MB)" "$log" \
    mvn -B -q -f "$PS_ROOT/scripts/maven/kafka/pom.xml" -Dmaven.repo.local="$PS_M2" \
    dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$libs.tmp" || return 1
  if [[ ! -f $libs.tmp/kafka_2.13-$KAFKA_VERSION.jar ]]; then
    warn "scripts/maven/kafka/pom.xml does not pin Kafka $KAFKA_VERSION; keep the two in step"
    return 1
  fi
  rm -rf "$libs"
  mv "$libs.tmp" "$libs"
  pkg_mark_installed kafka "$KAFKA_VERSION"
}

# kafka_cli CLASS|ALIAS ARGS... : run a Kafka tool with the broker's jars, e.g.
#   kafka_cli topics --bootstrap-server 127.0.0.1:9092 --create --topic t --partitions 3
# Tool logging goes to stderr at WARN so stdout stays the tool's own output.
kafka_cli() {
  kafka_installed || { warn "Kafka is not installed: ./dev install kafka"; return 1; }
  local class=$1
  shift
  case $class in
    topics) class=org.apache.kafka.tools.TopicCommand ;;
    console-producer) class=org.apache.kafka.tools.ConsoleProducer ;;
    console-consumer) class=org.apache.kafka.tools.consumer.ConsoleConsumer ;;
    consumer-groups) class=org.apache.kafka.tools.consumer.group.ConsumerGroupCommand ;;
    storage) class=kafka.tools.StorageTool ;;
  esac
  local dir
  dir=$PS_DATA/kafka
  mkdir -p "$dir"
  _kafka_log4j "$dir/log4j2-cli.properties" WARN SYSTEM_ERR
  java -Xmx512m -XX:TieredStopAtLevel=1 -Dlog4j2.configurationFile="$dir/log4j2-cli.properties" \
    -cp "$(pkg_dir kafka "$KAFKA_VERSION")/libs/*" "$class" "$@"
}

# _kafka_log4j FILE LEVEL TARGET : a console-only log4j2 config (Kafka's POMs ship none).
_kafka_log4j() {
  cat >"$1" <<EOF
status = warn
appender.console.type = Console
appender.console.name = console
appender.console.target = $3
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = $2
rootLogger.appenderRef.console.ref = console
# Per-request, state-change and full-config dumps (2,000+ lines a start) drown the useful lines.
logger.request.name = kafka.request.logger
logger.request.level = WARN
logger.state.name = state.change.logger
logger.state.level = WARN
logger.config.name = org.apache.kafka.common.config.AbstractConfig
logger.config.level = WARN
EOF
}

kafka_start() {
  local dir libs
  dir=$PS_DATA/kafka
  libs=$(pkg_dir kafka "$KAFKA_VERSION")/libs
  mkdir -p "$dir/data"
  # Rewritten on every start so a changed setting here takes effect; the cluster
  # identity lives in data/meta.properties, written once by the format below.
  cat >"$dir/server.properties" <<EOF
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:$KAFKA_CONTROLLER_PORT
# PODS: for pods on the real node. Bound on 127.0.0.1 like the rest, advertised
# as the node's bridge address, where a relay leads here (scripts/components/node.sh).
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT,PODS://127.0.0.1:$NODE_KAFKA_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT,PODS://$NODE_IP:$NODE_KAFKA_PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,PODS:PLAINTEXT
log.dirs=$dir/data
num.partitions=3
auto.create.topics.enable=true
# One node: every internal topic must have replication factor 1, or groups and
# transactions wait forever for replicas that never come.
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
# Fewer internal partitions than the default 50, so creating them (at the first consumer
# group or transaction) takes no noticeable time on a small machine.
offsets.topic.num.partitions=5
transaction.state.log.num.partitions=5
share.coordinator.state.topic.num.partitions=5
# Tests join groups one after another; don't make each wait 3 s for more members.
group.initial.rebalance.delay.ms=0
EOF
  _kafka_log4j "$dir/log4j2.properties" INFO SYSTEM_OUT
  # C1 only (TieredStopAtLevel=1): C2 compiling on 2 cores slows start-up by a third, and
  # a dev broker's load never needs C2's code.
  local jvm=(java -Xms256m -Xmx1g -XX:+UseG1GC -XX:TieredStopAtLevel=1 -XX:+ExitOnOutOfMemoryError
    -Djava.awt.headless=true -Dlog4j2.configurationFile="$dir/log4j2.properties" -cp "$libs/*")
  if [[ ! -f $dir/data/meta.properties ]]; then
    # A Kafka cluster id is 16 random bytes in unpadded URL-safe base64.
    local id
    id=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')
    info "formatting Kafka storage (cluster id $id)"
    if ! "${jvm[@]}" kafka.tools.StorageTool format --standalone --ignore-formatted \
      -t "$id" -c "$dir/server.properties" >>"$(logfile kafka)" 2>&1; then
      echo "storage format failed" >"$(failfile kafka)"
      return 1
    fi
  fi
  spawn kafka "${jvm[@]}" kafka.Kafka "$dir/server.properties"
}

# Ready once the broker has logged that it started, after the last "starting" marker
# spawn wrote, and the client port answers: the port alone opens before the broker
# has registered with the controller and can serve metadata.
kafka_ready() {
  port_open "$KAFKA_PORT" || return 1
  local log line
  log=$(logfile kafka)
  [[ -f $log ]] || return 1
  # `|| true`: with pipefail, tac dying of SIGPIPE after grep's first match is no failure.
  line=$(tac "$log" | grep -m1 -E 'Kafka Server started|^--- [^ ]+ starting: ' || true)
  [[ $line == *'Kafka Server started'* ]]
}
