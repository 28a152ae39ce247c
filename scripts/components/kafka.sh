# shellcheck shell=bash
# Apache Kafka in KRaft mode (one node that is both broker and controller), run from the
# jars on Maven Central (scripts/maven/kafka/pom.xml): Apache ships no Debian package.

KAFKA_VERSION=4.3.1
KAFKA_PORT=9092
KAFKA_CONTROLLER_PORT=9093
# TLS listeners for the security tests (docs/configuration.md, "Kafka security"):
# SASL_SSL with SCRAM logins, and SSL that requires a client certificate.
KAFKA_SASL_SSL_PORT=9094
KAFKA_MTLS_PORT=9095
# The SCRAM login the local broker knows. Local only, like every other dev password.
KAFKA_SCRAM_USER=polystream
KAFKA_SCRAM_PASSWORD=polystream-local
# Start-up is ~10 s (3 s more for the first-start format) on a loaded 2-core box; the
# margin is for a cold page cache and a machine busy compiling.
# shellcheck disable=SC2034 # read indirectly by timeout_of in ./dev
kafka_START_TIMEOUT=180

kafka_version() { echo "$KAFKA_VERSION"; }
kafka_installed() { pkg_installed kafka "$KAFKA_VERSION" && command -v java >/dev/null; }
kafka_addr() { echo "127.0.0.1:$KAFKA_PORT"; }
kafka_env() {
  echo "KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:$KAFKA_PORT"
  # For the Kafka security tests; the services use plaintext locally.
  echo "POLYSTREAM_KAFKA_SASL_SSL_ADDR=127.0.0.1:$KAFKA_SASL_SSL_PORT"
  echo "POLYSTREAM_KAFKA_MTLS_ADDR=127.0.0.1:$KAFKA_MTLS_PORT"
  echo "POLYSTREAM_KAFKA_CA_DIR=$PS_DATA/kafka/tls/client-ca"
  echo "POLYSTREAM_KAFKA_CLIENT_CERT_DIR=$PS_DATA/kafka/tls/client-cert"
  echo "POLYSTREAM_KAFKA_SCRAM_USER=$KAFKA_SCRAM_USER"
  echo "POLYSTREAM_KAFKA_SCRAM_PASSWORD=$KAFKA_SCRAM_PASSWORD"
}

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

# _kafka_tls DIR: a local CA, the broker's certificate for 127.0.0.1 and a client
# certificate, made once with openssl. Laid out for the clients as KAFKA_TLS_DIR
# expects: client-ca/ (ca.crt only) and client-cert/ (ca.crt, tls.crt, tls.key).
_kafka_tls() {
  local tls=$1/tls
  [[ -f $tls/broker.pem && -f $tls/client-cert/tls.key ]] && return 0
  command -v openssl >/dev/null || apt_ensure openssl || return 1
  rm -rf "$tls.tmp"
  mkdir -p "$tls.tmp/client-ca" "$tls.tmp/client-cert"
  (
    set -e
    cd "$tls.tmp"
    local days=3650
    openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days $days \
      -subj "/CN=Polystream local Kafka CA"
    openssl req -newkey rsa:2048 -nodes -keyout broker.key -out broker.csr -subj "/CN=127.0.0.1"
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >broker.ext
    openssl x509 -req -in broker.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days $days \
      -extfile broker.ext -out broker.crt
    openssl req -newkey rsa:2048 -nodes -keyout client.key -out client.csr -subj "/CN=polystream-client"
    openssl x509 -req -in client.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days $days -out client.crt
    # Kafka's PEM key store: the unencrypted PKCS#8 key, then the chain.
    cat broker.key broker.crt ca.crt >broker.pem
    cp ca.crt client-ca/
    cp ca.crt client-cert/
    cp client.crt client-cert/tls.crt
    cp client.key client-cert/tls.key
    chmod 600 ./*.key broker.pem client-cert/tls.key
  ) >>"$(logfile kafka)" 2>&1 || { echo "making the local TLS certificates failed" >"$(failfile kafka)"; return 1; }
  rm -rf "$tls"
  mv "$tls.tmp" "$tls"
}

kafka_start() {
  local dir libs
  dir=$PS_DATA/kafka
  libs=$(pkg_dir kafka "$KAFKA_VERSION")/libs
  mkdir -p "$dir/data"
  _kafka_tls "$dir" || return 1
  # Rewritten on every start so a changed setting here takes effect; the cluster
  # identity lives in data/meta.properties, written once by the format below.
  cat >"$dir/server.properties" <<EOF
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:$KAFKA_CONTROLLER_PORT
# PODS: for pods on the real node. Bound on 127.0.0.1 like the rest, advertised
# as the node's bridge address, where a relay leads here (scripts/components/node.sh).
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT,PODS://127.0.0.1:$NODE_KAFKA_PORT,SASL_SSL://127.0.0.1:$KAFKA_SASL_SSL_PORT,MTLS://127.0.0.1:$KAFKA_MTLS_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT,PODS://$NODE_IP:$NODE_KAFKA_PORT,SASL_SSL://127.0.0.1:$KAFKA_SASL_SSL_PORT,MTLS://127.0.0.1:$KAFKA_MTLS_PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,PODS:PLAINTEXT,SASL_SSL:SASL_SSL,MTLS:SSL
# TLS: one PEM key store (scripts/components/kafka.sh, _kafka_tls) for both TLS listeners.
ssl.keystore.type=PEM
ssl.keystore.location=$dir/tls/broker.pem
ssl.truststore.type=PEM
ssl.truststore.location=$dir/tls/ca.crt
# SASL_SSL: SCRAM logins (the user is added once the broker is up, see kafka_ready).
sasl.enabled.mechanisms=SCRAM-SHA-512,SCRAM-SHA-256
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
# MTLS: a client certificate signed by the local CA is the login.
listener.name.mtls.ssl.client.auth=required
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
    # A Kafka cluster id is 16 random bytes in unpadded URL-safe base64 —
    # never starting with '-', which the tool would take for an option (one
    # first start in 64 failed so).
    local id=-
    while [[ $id == -* ]]; do
      id=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')
    done
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
  [[ $line == *'Kafka Server started'* ]] || return 1
  _kafka_scram_user
}

# The SCRAM login lives in the cluster's metadata, so it is added once per data
# directory (a marker in it says so) through the plaintext listener.
_kafka_scram_user() {
  local marker=$PS_DATA/kafka/data/.scram-$KAFKA_SCRAM_USER
  [[ -f $marker ]] && return 0
  local mechanism
  for mechanism in SCRAM-SHA-512 SCRAM-SHA-256; do
    kafka_cli kafka.admin.ConfigCommand --bootstrap-server "127.0.0.1:$KAFKA_PORT" --alter \
      --entity-type users --entity-name "$KAFKA_SCRAM_USER" \
      --add-config "$mechanism=[iterations=4096,password=$KAFKA_SCRAM_PASSWORD]" \
      >>"$(logfile kafka)" 2>&1 || return 1
  done
  touch "$marker"
}

# The topics test runs make for themselves: each test names its own after a
# random id, and one that fails (or is killed) leaves them behind.
KAFKA_TEST_TOPICS='(s1-test-|s1-abuse-|s2t-|s3t-|s3spool-|s3-trace-|s3-outage-|e2e-|node-).*'

# kafka_clear_test_topics : deletes what earlier test runs left. Over many runs
# a broker collected 540 such topics (1 000+ partitions) and every produce
# got slower: the end-to-end p99 at 1 000 commands/s doubled. `./dev test`
# runs it before the tests, so none of the current run's topics exist yet.
kafka_clear_test_topics() {
  local n
  n=$(kafka_cli topics --bootstrap-server "127.0.0.1:$KAFKA_PORT" --list 2>/dev/null |
    grep -cE "^$KAFKA_TEST_TOPICS\$") || n=0
  ((n > 0)) || return 0
  info "deleting $n topics earlier test runs left"
  kafka_cli topics --bootstrap-server "127.0.0.1:$KAFKA_PORT" --delete --if-exists \
    --topic "$KAFKA_TEST_TOPICS" >>"$(logfile kafka-cli)" 2>&1
}
