#!/usr/bin/env bash
# Recorrido del README: provisiona un tenant Standard y lee sus entitlements en el edge.
# Requiere `npm start` en marcha, curl y jq.
set -euo pipefail
CRED=${CRED:-.data/dev-credentials.json}
ADMIN=$(jq -r .adminUrl "$CRED"); EDGE=$(jq -r .edgeUrl "$CRED")
CID=$(jq -r .admin.clientId "$CRED"); CS=$(jq -r .admin.clientSecret "$CRED")

TOKEN=$(curl -sf -X POST "$EDGE/oauth/token" -u "$CID:$CS" -d grant_type=client_credentials | jq -r .access_token)
AUTH="authorization: Bearer $TOKEN"
CUSTOMER=$(curl -sf -H "$AUTH" "$ADMIN/api/customers?country=CO" | jq -r '.items[0].id')
PRODUCT=$(curl -sf -H "$AUTH" "$ADMIN/api/products" | jq -r '.items[] | select(.code=="FARUTECH_VET") | .id')
PLAN=$(curl -sf -H "$AUTH" "$ADMIN/api/plans?productId=$PRODUCT" | jq -r '.items[] | select(.code=="VET_PROFESSIONAL") | .id')

ACCEPTED=$(curl -sf -X POST "$ADMIN/api/provisioning/provision" -H "$AUTH" -H 'content-type: application/json' \
  -d "{\"customerId\":\"$CUSTOMER\",\"productId\":\"$PRODUCT\",\"planId\":\"$PLAN\",\"instanceCode\":\"demo-$RANDOM\",\"databaseTier\":\"standard\",\"customFeatures\":{\"max_users\":100,\"ADVANCED_REPORTS\":true,\"BATCH_CONTROL\":false}}")
echo "$ACCEPTED" | jq .
TASK=$(echo "$ACCEPTED" | jq -r .taskId); INSTANCE=$(echo "$ACCEPTED" | jq -r .tenantInstanceId)

for _ in $(seq 1 50); do
  STATUS=$(curl -sf -H "$AUTH" "$ADMIN/api/provisioning/tasks/$TASK" | jq -r .status)
  [ "$STATUS" = succeeded ] || [ "$STATUS" = dead_lettered ] && break
  sleep 0.2
done
curl -sf -H "$AUTH" "$ADMIN/api/provisioning/tasks/$TASK" | jq '{status, attempts, steps: [.steps[] | {name, status}]}'
curl -sf -H "$AUTH" "$EDGE/v1/entitlements?instanceId=$INSTANCE" | jq .
