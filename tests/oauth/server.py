"""An OAuth 2.0 authorization server and protected resource for tollgate's tests.

Built from authlib's server classes (Flask integration); the only glue is the
in-memory storage authlib leaves to the application. Grants: client_credentials
(RFC 6749 4.4), refresh_token (6, rotating: every use revokes the old one) and
jwt_bearer (RFC 7523, Google service-account style: RS256, `aud` = token URL,
`scope` claim). RFC 7009 revocation. Served over HTTPS on a loopback address.

Usage: python3 server.py CONFIG.json; prints the port on stdout once listening.
CONFIG: {"cert", "key", "bind" (default 127.0.0.1), "port" (0: any), "host" (name in the token URL, for
`aud`), "expires_in", "clients": [{"client_id", "client_secret",
"auth_method", "scope", "expires_in"?}], "service_accounts": [{"client_email",
"public_key" (PEM), "private_key_id", "scope"}], "refresh_tokens":
[{"token", "client_id", "scope"}]}.

Routes: POST /oauth/token, POST /oauth/revoke, GET /api/whoami (bearer: client,
scope, audience), GET /api/echo-auth (bearer: echoes the Authorization header),
GET /stats (counters for the test).
"""

import json
import ssl
import sys
import threading
import time

from authlib.common.security import generate_token
from authlib.integrations.flask_oauth2 import AuthorizationServer, ResourceProtector, current_token
from authlib.jose import JsonWebKey
from authlib.oauth2.rfc6749 import ClientMixin, InvalidGrantError, InvalidScopeError, TokenMixin, grants
from authlib.oauth2.rfc6749.util import scope_to_list
from authlib.oauth2.rfc6750 import BearerTokenGenerator, BearerTokenValidator
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7523 import JWTBearerGrant
from flask import Flask, jsonify, request
from werkzeug.serving import make_server

JWT_BEARER = JWTBearerGrant.GRANT_TYPE
CONFIG = json.load(open(sys.argv[1]))
LOCK = threading.Lock()
STATS = {"token_calls": {}, "token_errors": {}, "token_requests": [], "revocations": 0, "revoked": []}
TOKENS = {}  # access token -> Token
REFRESH = {}  # refresh token -> Token (revoked ones kept, marked)


class Client(ClientMixin):
    def __init__(self, client_id, secret, auth_method, scope, grant_types, expires_in=None, key=None, kid=None):
        self.client_id, self.secret, self.auth_method = client_id, secret, auth_method
        self.scope, self.grant_types, self.expires_in, self.key, self.kid = scope, grant_types, expires_in, key, kid

    def get_client_id(self):
        return self.client_id

    def get_allowed_scope(self, scope):
        allowed = set(scope_to_list(self.scope))
        return " ".join(s for s in scope_to_list(scope) if s in allowed) if scope else self.scope

    def check_client_secret(self, client_secret):
        return self.secret is not None and client_secret == self.secret

    def check_endpoint_auth_method(self, method, endpoint):
        return method == self.auth_method

    def check_grant_type(self, grant_type):
        return grant_type in self.grant_types

    def get_default_redirect_uri(self):
        return None

    def check_redirect_uri(self, redirect_uri):
        return False

    def check_response_type(self, response_type):
        return False


class Token(TokenMixin):
    def __init__(self, client_id, scope, grant_type, audience=None, expires_in=0, access_token=None):
        self.client_id, self.scope, self.grant_type, self.audience = client_id, scope, grant_type, audience
        self.expires_in, self.issued_at, self.revoked, self.access_token = expires_in, time.time(), False, access_token

    def check_client(self, client):
        return client.get_client_id() == self.client_id

    def get_scope(self):
        return self.scope

    def get_expires_in(self):
        return self.expires_in

    def is_expired(self):
        return bool(self.expires_in) and time.time() > self.issued_at + self.expires_in

    def is_revoked(self):
        return self.revoked


CLIENTS = {}
for c in CONFIG.get("clients", []):
    grant_types = ["client_credentials", "refresh_token"]
    CLIENTS[c["client_id"]] = Client(c["client_id"], c["client_secret"], c.get("auth_method", "client_secret_basic"),
                                     c.get("scope", ""), grant_types, c.get("expires_in"))
for sa in CONFIG.get("service_accounts", []):
    CLIENTS[sa["client_email"]] = Client(sa["client_email"], None, "none", sa.get("scope", ""), [JWT_BEARER],
                                         sa.get("expires_in"), JsonWebKey.import_key(sa["public_key"]), sa["private_key_id"])
for r in CONFIG.get("refresh_tokens", []):
    REFRESH[r["token"]] = Token(r["client_id"], r.get("scope", ""), "refresh_token")


def query_client(client_id):
    return CLIENTS.get(client_id)


def save_token(token, req):
    record = Token(req.client.get_client_id(), token.get("scope", ""), req.grant_type,
                   req.form.get("audience"), token.get("expires_in", 0), token["access_token"])
    with LOCK:
        TOKENS[token["access_token"]] = record
        if token.get("refresh_token"):  # its own record: revoking the access token leaves it
            REFRESH[token["refresh_token"]] = Token(record.client_id, record.scope, "refresh_token")


def expires_in(client, grant_type):
    return client.expires_in or CONFIG.get("expires_in", 3600)


class RotatingRefreshGrant(grants.RefreshTokenGrant):
    INCLUDE_NEW_REFRESH_TOKEN = True
    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]

    def authenticate_refresh_token(self, refresh_token):
        token = REFRESH.get(refresh_token)
        return token if token and not token.revoked else None

    def authenticate_user(self, refresh_token):
        return "resource-owner"

    def revoke_old_credential(self, refresh_token):
        refresh_token.revoked = True


class ClientCredentialsGrant(grants.ClientCredentialsGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]


class GoogleJWTBearerGrant(JWTBearerGrant):
    """Google's service-account flow: the scope is the assertion's `scope` claim."""

    CLAIMS_OPTIONS = {"iss": {"essential": True}, "exp": {"essential": True}, "iat": {"essential": True},
                      "scope": {"essential": True}}

    def process_assertion_claims(self, assertion):
        self.CLAIMS_OPTIONS = dict(self.CLAIMS_OPTIONS, aud={"essential": True, "value": token_url()})
        self.claims = super().process_assertion_claims(assertion)
        if self.claims["exp"] - self.claims["iat"] > 3600:
            raise InvalidGrantError(description="assertion lives longer than an hour")
        return self.claims

    def resolve_issuer_client(self, issuer):
        client = CLIENTS.get(issuer)
        if client is None or client.key is None:
            raise InvalidGrantError(description="unknown issuer")
        return client

    def resolve_client_key(self, client, headers, payload):
        if headers.get("alg") != "RS256" or headers.get("kid") != client.kid:
            raise InvalidGrantError(description="alg must be RS256 and kid the key's private_key_id")
        return client.key

    def validate_requested_scope(self):
        scope = self.claims["scope"]
        if set(scope_to_list(scope)) - set(scope_to_list(self.request.client.scope)):
            raise InvalidScopeError()

    def create_token_response(self):
        token = self.generate_token(scope=self.claims["scope"], user=None, include_refresh_token=False)
        self.save_token(token)
        return 200, token, self.TOKEN_RESPONSE_HEADER


class Revocation(RevocationEndpoint):
    CLIENT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]

    def query_token(self, token_string, token_type_hint):
        return TOKENS.get(token_string) or REFRESH.get(token_string)

    def revoke_token(self, token, req):
        with LOCK:
            token.revoked = True
            STATS["revocations"] += 1
            STATS["revoked"].append(req.form["token"])


class Validator(BearerTokenValidator):
    def authenticate_token(self, token_string):
        return TOKENS.get(token_string)


app = Flask(__name__)
server = AuthorizationServer(app, query_client=query_client, save_token=save_token)
server.register_token_generator("default", BearerTokenGenerator(
    lambda *a, **k: generate_token(42), lambda *a, **k: generate_token(48), expires_in))
server.register_grant(ClientCredentialsGrant)
server.register_grant(RotatingRefreshGrant)
server.register_grant(GoogleJWTBearerGrant)
server.register_endpoint(Revocation)
require_oauth = ResourceProtector()
require_oauth.register_token_validator(Validator())
PORT = [CONFIG.get("port", 0)]


def token_url():
    return f"https://{CONFIG.get('host', 'login.test')}:{PORT[0]}/oauth/token"


@app.post("/oauth/token")
def issue_token():
    grant = request.form.get("grant_type", "")
    basic = request.headers.get("Authorization", "").startswith("Basic ")
    auth = "basic" if basic else "post" if "client_secret" in request.form else "none"
    response = server.create_token_response()
    with LOCK:
        STATS["token_calls"][grant] = STATS["token_calls"].get(grant, 0) + 1
        STATS["token_requests"].append({"grant_type": grant, "client_auth": auth, "scope": request.form.get("scope"),
                                        "audience": request.form.get("audience"), "status": response.status_code})
        if response.status_code != 200:
            error = json.loads(response.get_data()).get("error", "?")
            STATS["token_errors"][error] = STATS["token_errors"].get(error, 0) + 1
    return response


@app.post("/oauth/revoke")
def revoke_token():
    return server.create_endpoint_response(Revocation.ENDPOINT_NAME)


@app.get("/api/whoami")
@require_oauth()
def whoami():
    t = current_token
    return jsonify(client_id=t.client_id, scope=t.scope, audience=t.audience, grant_type=t.grant_type,
                   host=request.host)


@app.get("/api/echo-auth")
@require_oauth()
def echo_auth():
    return jsonify(authorization=request.headers.get("Authorization"))


@app.get("/stats")
def stats():
    with LOCK:
        live = [t for t, r in REFRESH.items() if not r.revoked]
        issued = [{"access_token": t, "client_id": r.client_id, "grant_type": r.grant_type, "scope": r.scope,
                   "audience": r.audience, "revoked": r.revoked} for t, r in TOKENS.items()]
        return jsonify(dict(STATS, refresh_tokens=live, issued=issued))


if __name__ == "__main__":
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(CONFIG["cert"], CONFIG["key"])
    context.set_alpn_protocols(["http/1.1"])
    httpd = make_server(CONFIG.get("bind", "127.0.0.1"), PORT[0], app, threaded=True, ssl_context=context)
    PORT[0] = httpd.socket.getsockname()[1]
    print(PORT[0], flush=True)
    httpd.serve_forever()
