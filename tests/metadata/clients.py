"""Real cloud SDKs asking the metadata service for credentials, for tollgate's
tests. Prints one JSON line of what each SDK got.

Usage: python3 clients.py botocore [S3_ENDPOINT]
       python3 clients.py google [API_URL]
       python3 clients.py azure SCOPE [API_URL]

botocore: the credentials its default chain finds (IMDSv2 when nothing else
is configured), the region from IMDS, and (with S3_ENDPOINT) a ListObjectsV2
of bucket `b` there, signed with those credentials (its error, if any, is
printed: the test looks at what the endpoint received). google: google-auth's Compute Engine
credentials refreshed, the project id, and (with API_URL) a GET through an
AuthorizedSession. azure: ManagedIdentityCredential's token for SCOPE and (with
API_URL) a GET with it as bearer. The API's answer is printed as it came.
"""

import json
import sys


def api_call(get, url):
    if not url:
        return {}
    response = get(url)
    try:
        body = response.json()
    except ValueError:
        body = response.text
    return {"api_status": response.status_code, "api_body": body}


def botocore_client(endpoint):
    import botocore.config
    import botocore.session
    import botocore.utils

    session = botocore.session.Session()
    credentials = session.get_credentials()
    frozen = credentials.get_frozen_credentials() if credentials else None
    region = botocore.utils.InstanceMetadataRegionFetcher().retrieve_region()
    s3 = {}
    if endpoint:
        client = session.create_client(
            "s3",
            endpoint_url=endpoint,
            region_name=region,
            config=botocore.config.Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
        )
        try:
            client.list_objects_v2(Bucket="b")
            s3 = {"s3_error": None}
        except Exception as error:  # the echo upstream is no S3: its answer may not parse
            s3 = {"s3_error": type(error).__name__}
    return dict(s3, **{
        "method": credentials.method if credentials else None,
        "access_key": frozen.access_key if frozen else None,
        "secret_key": frozen.secret_key if frozen else None,
        "token": frozen.token if frozen else None,
        "region": region,
    })


def google_client(url):
    import google.auth.compute_engine
    import google.auth.transport.requests
    from google.auth.compute_engine import _metadata

    request = google.auth.transport.requests.Request()
    credentials = google.auth.compute_engine.Credentials()
    credentials.refresh(request)
    out = {
        "token": credentials.token,
        "email": credentials.service_account_email,
        "project": _metadata.get_project_id(request),
        "expiry": credentials.expiry.isoformat() if credentials.expiry else None,
    }
    session = google.auth.transport.requests.AuthorizedSession(credentials)
    out.update(api_call(session.get, url))
    return out


def azure_client(scope, url):
    import requests
    from azure.identity import ManagedIdentityCredential

    token = ManagedIdentityCredential().get_token(scope)
    out = {"token": token.token, "expires_on": token.expires_on}
    bearer = {"Authorization": "Bearer " + token.token}
    out.update(api_call(lambda u: requests.get(u, headers=bearer, timeout=30), url))
    return out


def main():
    mode, args = sys.argv[1], sys.argv[2:]
    if mode == "botocore":
        out = botocore_client(args[0] if args else None)
    elif mode == "google":
        out = google_client(args[0] if args else None)
    elif mode == "azure":
        out = azure_client(args[0], args[1] if len(args) > 1 else None)
    else:
        raise SystemExit("unknown mode " + mode)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
