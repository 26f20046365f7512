"""Real AWS clients for tests/aws.rs: boto3 and botocore, unmodified, configured
only the way a user would (environment, endpoint_url).

Usage: client.py COMMAND JSON_ARGS; prints one JSON object. Credentials,
proxy and CA bundle come from the environment the test sets (AWS_ACCESS_KEY_ID,
HTTPS_PROXY, AWS_CA_BUNDLE, ...). A ClientError is printed as
{"error": code, "status": http status, "body": raw body}.
"""

import hashlib
import json
import os
import sys

import boto3
import botocore.auth
import botocore.awsrequest
import botocore.credentials
import botocore.exceptions
from botocore.config import Config

PATH_STYLE = Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1, "mode": "standard"})


def client(service, args):
    return boto3.client(service, endpoint_url=args["endpoint"], region_name=args.get("region", "us-east-1"), config=PATH_STYLE)


def s3_roundtrip(args):
    s3 = client("s3", args)
    s3.create_bucket(Bucket=args["bucket"])
    s3.put_object(Bucket=args["bucket"], Key=args["key"], Body=args["body"].encode())
    got = s3.get_object(Bucket=args["bucket"], Key=args["key"])["Body"].read().decode()
    listed = [o["Key"] for o in s3.list_objects_v2(Bucket=args["bucket"]).get("Contents", [])]
    return {"body": got, "keys": listed}


def s3_multipart(args):
    """A multipart upload of `parts` parts of `part_mib` MiB each; records what
    boto3 sent for every UploadPart (payload hash, content encoding)."""
    s3 = client("s3", args)
    sent = []

    def header(request, name):
        value = request.headers.get(name)
        return value.decode() if isinstance(value, bytes) else value

    def record(request, **_):
        sent.append(
            {
                "x-amz-content-sha256": header(request, "X-Amz-Content-SHA256"),
                "content-encoding": header(request, "Content-Encoding"),
                "x-amz-trailer": header(request, "X-Amz-Trailer"),
            }
        )

    s3.meta.events.register("before-send.s3.UploadPart", record)
    s3.create_bucket(Bucket=args["bucket"])
    upload = s3.create_multipart_upload(Bucket=args["bucket"], Key=args["key"])
    digest = hashlib.sha256()
    parts = []
    for number in range(1, args["parts"] + 1):
        data = bytes((i * 7 + number) % 251 for i in range(256)) * (args["part_mib"] * 4096)
        digest.update(data)
        answer = s3.upload_part(
            Bucket=args["bucket"], Key=args["key"], UploadId=upload["UploadId"], PartNumber=number, Body=data
        )
        parts.append({"PartNumber": number, "ETag": answer["ETag"]})
    s3.complete_multipart_upload(
        Bucket=args["bucket"], Key=args["key"], UploadId=upload["UploadId"], MultipartUpload={"Parts": parts}
    )
    body = s3.get_object(Bucket=args["bucket"], Key=args["key"])["Body"].read()
    return {
        "sent": sent,
        "size": len(body),
        "sha256": hashlib.sha256(body).hexdigest(),
        "expected_sha256": digest.hexdigest(),
    }


def sqs(args):
    sqs = client("sqs", args)
    url = sqs.create_queue(QueueName=args["queue"])["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody=args["message"])
    got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
    return {"queue_url": url, "received": [m["Body"] for m in got.get("Messages", [])]}


def presign(args):
    s3 = boto3.client(
        "s3",
        endpoint_url=args["endpoint"],
        region_name=args.get("region", "us-east-1"),
        config=PATH_STYLE.merge(Config(signature_version="s3v4")),
    )
    url = s3.generate_presigned_url(
        "get_object", Params={"Bucket": args["bucket"], "Key": args["key"]}, ExpiresIn=args.get("expires", 300)
    )
    return {"url": url}


def sign(args):
    """Signs one request with botocore's SigV4 signer and the environment's
    credentials, without sending it: the test sends it (maybe altered)."""
    creds = botocore.credentials.Credentials(
        os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"], os.environ.get("AWS_SESSION_TOKEN")
    )
    signer = botocore.auth.S3SigV4Auth if args["service"] == "s3" else botocore.auth.SigV4Auth
    request = botocore.awsrequest.AWSRequest(
        method=args["method"], url=args["url"], data=args.get("body", "").encode(), headers=args.get("headers", {})
    )
    signer(creds, args["service"], args["region"]).add_auth(request)
    return {"headers": [[k, v] for k, v in request.headers.items()]}


def verify_presigned(args):
    """Checks a presigned URL as an upstream received it, with botocore's own
    query signer: the same URL, date and expiry signed again with the real
    credentials must give the signature it carries."""
    from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

    parts = urlsplit(args["url"])
    query = parse_qsl(parts.query, keep_blank_values=True)
    given = dict(query)
    rest = [(k, v) for k, v in query if not k.startswith("X-Amz-")]
    creds = botocore.credentials.Credentials(args["access_key"], args["secret_key"], args.get("token"))
    scope = given["X-Amz-Credential"].split("/")
    request = botocore.awsrequest.AWSRequest(
        method="GET", url=urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(rest), ""))
    )
    # add_auth() would take the current time; these are its steps with the
    # URL's own date.
    request.context["timestamp"] = given["X-Amz-Date"]
    signer = botocore.auth.S3SigV4QueryAuth(creds, scope[3], scope[2], expires=int(given["X-Amz-Expires"]))
    signer._modify_request_before_signing(request)
    canonical = signer.canonical_request(request)
    signature = signer.signature(signer.string_to_sign(request, canonical), request)
    return {"valid": signature == given.get("X-Amz-Signature"), "query": given}


def key_exists(args):
    iam = boto3.client(
        "iam",
        endpoint_url=args["endpoint"],
        region_name="us-east-1",
        aws_access_key_id=args["root_access_key_id"],
        aws_secret_access_key=args["root_secret_access_key"],
        verify=args["ca"],
    )
    for user in iam.list_users()["Users"]:
        for key in iam.list_access_keys(UserName=user["UserName"])["AccessKeyMetadata"]:
            if key["AccessKeyId"] == args["access_key_id"]:
                return {"exists": True, "user": user["UserName"]}
    return {"exists": False}


def list_buckets(args):
    """ListBuckets straight to moto with the given key pair (no proxy)."""
    s3 = boto3.client(
        "s3",
        endpoint_url=args["endpoint"],
        region_name="us-east-1",
        aws_access_key_id=args["access_key_id"],
        aws_secret_access_key=args["secret_access_key"],
        aws_session_token=args.get("session_token"),
        verify=args["ca"],
        config=PATH_STYLE,
    )
    return {"buckets": [b["Name"] for b in s3.list_buckets()["Buckets"]]}


COMMANDS = {
    "s3-roundtrip": s3_roundtrip,
    "s3-multipart": s3_multipart,
    "sqs": sqs,
    "presign": presign,
    "sign": sign,
    "key-exists": key_exists,
    "verify-presigned": verify_presigned,
    "list-buckets": list_buckets,
}


def main():
    args = json.loads(sys.argv[2])
    try:
        result = COMMANDS[sys.argv[1]](args)
    except botocore.exceptions.ClientError as err:
        meta = err.response.get("ResponseMetadata", {})
        result = {
            "error": err.response.get("Error", {}).get("Code"),
            "message": err.response.get("Error", {}).get("Message"),
            "status": meta.get("HTTPStatusCode"),
        }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
