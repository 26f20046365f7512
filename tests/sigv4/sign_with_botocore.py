"""Signs a set of requests with botocore's own SigV4 signers (the code every
boto3 client runs) and prints them as JSON lines, for tests/sigv4.rs to check
that tollgate computes the same canonical request and signature.

Each line: method, url, headers (as sent, including Authorization), service,
the secret used, and the payload hash botocore signed.
"""

import json
import sys

from botocore.auth import S3SigV4Auth, SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
CREDS = Credentials("__AWS__", SECRET)
TOKEN_CREDS = Credentials("__AWS__", SECRET, token="__AWS__")

CASES = [
    # (service, region, method, url, headers, body, credentials)
    ("s3", "us-east-1", "GET", "https://bucket.s3.amazonaws.com/key%20with%20space/a+b?list-type=2&prefix=a%2Fb&max-keys=5", {}, b"", CREDS),
    ("s3", "eu-west-1", "PUT", "https://s3.eu-west-1.amazonaws.com/bucket/dir//./x~y.txt", {"Content-Type": "text/plain", "X-Amz-Meta-Note": "  two   spaces  "}, b"hello", TOKEN_CREDS),
    ("s3", "us-east-1", "GET", "https://bucket.s3.amazonaws.com/?versions&delimiter=%2F&encoding-type=url", {}, b"", CREDS),
    ("sqs", "us-west-2", "POST", "https://sqs.us-west-2.amazonaws.com/123456789012/queue", {"Content-Type": "application/x-www-form-urlencoded"}, b"Action=SendMessage&MessageBody=hi", CREDS),
    ("iam", "us-east-1", "GET", "https://iam.amazonaws.com/?Action=ListUsers&Version=2010-05-08", {}, b"", CREDS),
    ("execute-api", "us-east-1", "GET", "https://abc.execute-api.us-east-1.amazonaws.com/prod/a%2Fb/c%20d/../e?z=1&a=%C3%A9&a=0", {"X-Custom": "a\tb"}, b"", TOKEN_CREDS),
    ("dynamodb", "us-east-1", "POST", "https://dynamodb.us-east-1.amazonaws.com/", {"Content-Type": "application/x-amz-json-1.0", "X-Amz-Target": "DynamoDB_20120810.ListTables"}, b"{}", TOKEN_CREDS),
]


# Presigned URLs: the sandbox presigns with the placeholder (whose secret key is
# the placeholder itself); the same URL presigned with real temporary
# credentials at the same instant is what tollgate must produce.
PLACEHOLDER = Credentials("__AWS__", "__AWS__", token="__AWS__")
REAL = Credentials("ASIAEXAMPLEREAL00001", "real/secret+key0123456789abcdefghijklm", token="IQoJb3JpZ2luX2VjE//real+session/token==")

PRESIGN = [
    ("s3", "us-east-1", "GET", "https://bucket.s3.amazonaws.com/reports/2026%20q4.csv?versionId=3HL4kqtJ&response-content-type=text%2Fcsv", 900),
    ("s3", "eu-west-1", "PUT", "https://s3.eu-west-1.amazonaws.com/bucket/upload/a~b.bin", 3600),
    ("sqs", "us-west-2", "GET", "https://sqs.us-west-2.amazonaws.com/123456789012/queue?Action=ReceiveMessage", 300),
]


def freeze_time():
    import datetime as _dt

    class Fixed(_dt.datetime):
        @classmethod
        def utcnow(cls):
            return cls(2026, 12, 5, 8, 0, 0)

        @classmethod
        def now(cls, tz=None):
            return cls(2026, 12, 5, 8, 0, 0, tzinfo=tz)

    _dt.datetime = Fixed


REAL_STATIC = Credentials("AKIAEXAMPLESTATIC001", "static/secret+key0123456789abcdefghijk")


def resign():
    """Each header-signed case at one instant, signed with the placeholder (the
    sandbox), with real temporary credentials and with a real static key: what
    tollgate's re-signing must turn the first into."""
    freeze_time()
    for service, region, method, url, headers, body, _ in CASES:
        out = {"service": service, "method": method, "body": body.decode()}
        for name, creds in (("placeholder", PLACEHOLDER), ("real", REAL), ("static", REAL_STATIC)):
            request = AWSRequest(method=method, url=url, headers=dict(headers), data=body)
            signer = S3SigV4Auth if service == "s3" else SigV4Auth
            signer(creds, service, region).add_auth(request)
            prepared = request.prepare()
            out[name] = {
                "url": prepared.url,
                "headers": [[k, v if isinstance(v, str) else v.decode()] for k, v in prepared.headers.items()],
            }
        for name, creds in (("real", REAL), ("static", REAL_STATIC)):
            out[name]["key"] = creds.access_key
            out[name]["secret"] = creds.secret_key
            out[name]["token"] = creds.token
        print(json.dumps(out))


def presign():
    from botocore.auth import S3SigV4QueryAuth, SigV4QueryAuth

    freeze_time()
    for service, region, method, url, expires in PRESIGN:
        out = {"service": service, "method": method}
        for name, creds in (("placeholder", PLACEHOLDER), ("real", REAL)):
            request = AWSRequest(method=method, url=url)
            signer = S3SigV4QueryAuth if service == "s3" else SigV4QueryAuth
            signer(creds, service, region, expires=expires).add_auth(request)
            out[name] = request.prepare().url
        out["real_key"] = REAL.access_key
        out["real_secret"] = REAL.secret_key
        out["real_token"] = REAL.token
        print(json.dumps(out))


def main():
    if sys.argv[1:] == ["presign"]:
        presign()
        return
    if sys.argv[1:] == ["resign"]:
        resign()
        return
    for service, region, method, url, headers, body, creds in CASES:
        request = AWSRequest(method=method, url=url, headers=dict(headers), data=body)
        signer = S3SigV4Auth if service == "s3" else SigV4Auth
        signer(creds, service, region).add_auth(request)
        prepared = request.prepare()
        payload_hash = prepared.headers.get("X-Amz-Content-SHA256")
        if payload_hash is None:
            import hashlib
            payload_hash = hashlib.sha256(body).hexdigest()
        print(json.dumps({
            "service": service,
            "method": prepared.method,
            "url": prepared.url,
            "headers": [[k, v if isinstance(v, str) else v.decode()] for k, v in prepared.headers.items()],
            "payload_hash": payload_hash,
            "secret": creds.secret_key,
        }))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
