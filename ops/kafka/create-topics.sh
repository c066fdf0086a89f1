#!/usr/bin/env bash
# Create starcast's topics before the workers start (docker-compose `kafka-init`).
# Inputs and outputs: $PARTITIONS partitions each (co-partitioned: one seller, one partition
# everywhere). star-forecasts, star-warnings (the warnings table's changelog) and the state
# changelog are compacted: the latest value per key.
# star-ratings-monthly is the official table's changelog but keeps every month: not compacted.
set -euo pipefail
TOPICS=/opt/kafka/bin/kafka-topics.sh
create() {
  "$TOPICS" --bootstrap-server "$BOOTSTRAP" --create --if-not-exists --topic "$1" \
    --partitions "$PARTITIONS" --replication-factor 1 "${@:2}"
}
for topic in buyer-messages seller-replies spam-actions ta-orders penalties store-visits \
             product-updates seller-profiles marketing-events \
             order-fulfilments buyer-evaluations disputes product-quality certificates \
             search-stats export-signals starcast-ticks \
             star-changes star-ratings-monthly starcast-dead-letters; do
  create "$topic"
done
for topic in star-forecasts star-warnings starcast-state-changelog; do
  create "$topic" --config cleanup.policy=compact
done
"$TOPICS" --bootstrap-server "$BOOTSTRAP" --list
