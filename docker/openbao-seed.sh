#!/bin/sh
# One-shot seed for the OpenBao dev server in docker/compose.yaml (service
# openbao-seed). Runs with the root token; leaves tollgate a token of its own
# that can only read the demo secret.
#
# In:  BAO_ADDR, BAO_TOKEN (root), DEMO_GITHUB_TOKEN (optional),
#      TOKEN_FILE (where tollgate reads its token), TOLLGATE_UID.
set -eu

: "${TOKEN_FILE:=/out/token}"
: "${TOLLGATE_UID:=10001}"

# The demo secret that the policy reads: secret/sandbox/github, field token (KV v2).
if [ -n "${DEMO_GITHUB_TOKEN:-}" ]; then
  value=$DEMO_GITHUB_TOKEN
else
  value=not-a-real-github-token
  echo "openbao-seed: DEMO_GITHUB_TOKEN is empty; storing a dummy token (GitHub will answer 401)" >&2
fi
# Value on stdin, not in argv: argv is visible in the process list.
printf '%s' "$value" | bao kv put -mount=secret sandbox/github token=- >/dev/null

# tollgate's own access: read that path, nothing else (the default policy adds
# token lookup-self and renew-self, which tollgate uses).
bao policy write tollgate - >/dev/null <<'HCL'
path "secret/data/sandbox/*" {
  capabilities = ["read"]
}
HCL

# Periodic: tollgate renews it at two thirds of the period, indefinitely.
umask 077
bao token create -policy=tollgate -period=1h -orphan -display-name=tollgate \
  -field=token > "$TOKEN_FILE.tmp"
chown "$TOLLGATE_UID:$TOLLGATE_UID" "$TOKEN_FILE.tmp"
mv -f "$TOKEN_FILE.tmp" "$TOKEN_FILE"
echo "openbao-seed: wrote secret/sandbox/github and a read-only token for tollgate" >&2
