use super::*;
use http::{HeaderMap, HeaderValue, Method};
use serde_json::Value;

const TASK: &str = "agent";

fn offer() -> Offer {
    Offer {
        aws: vec![AwsRole {
            name: "AWS".into(),
            placeholder: "__AWS__".into(),
            region: Some("eu-west-3".into()),
        }],
        gcp: Some(GcpAccount {
            placeholder: "__GCP_TOKEN__".into(),
            scopes: vec!["https://www.googleapis.com/auth/cloud-platform".into()],
            secret: "GCP_TOKEN".into(),
            key: None,
        }),
        azure: Some(AzureIdentity {
            placeholder: "__AZURE_TOKEN__".into(),
        }),
    }
}

fn identity() -> GcpIdentity {
    GcpIdentity {
        email: "agent@proj.iam.gserviceaccount.com".into(),
        project_id: Some("proj".into()),
    }
}

/// One request: `METHOD PATH[?QUERY]` with `headers`.
struct Req {
    method: Method,
    target: String,
    headers: HeaderMap,
}

fn req(method: Method, target: &str, headers: &[(&'static str, &str)]) -> Req {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        map.append(
            *name,
            HeaderValue::from_str(value).unwrap_or_else(|e| panic!("{e}")),
        );
    }
    Req {
        method,
        target: target.into(),
        headers: map,
    }
}

struct Imds {
    offer: Offer,
    identity: Option<GcpIdentity>,
    key: SessionKey,
    now: SystemTime,
    task: &'static str,
}

impl Imds {
    fn new(offer: Offer) -> Self {
        Self {
            offer,
            identity: Some(identity()),
            key: SessionKey::random().unwrap_or_else(|| panic!("no randomness")),
            now: SystemTime::now(),
            task: TASK,
        }
    }

    fn send(&self, req: &Req) -> Reply {
        let (path, query) = match req.target.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (req.target.as_str(), None),
        };
        let ask = Ask {
            method: &req.method,
            path,
            query,
            headers: &req.headers,
        };
        let caller = Caller {
            task: self.task,
            now: self.now,
            expires: credentials_expire(self.now, None),
        };
        answer(
            &self.offer,
            self.identity.as_ref(),
            &ask,
            &caller,
            &self.key,
        )
    }

    fn token(&self, ttl: &str) -> String {
        let reply = self.send(&req(
            Method::PUT,
            "/latest/api/token",
            &[("x-aws-ec2-metadata-token-ttl-seconds", ttl)],
        ));
        assert_eq!(reply.status, 200, "{reply:?}");
        assert_eq!(
            reply.header("x-aws-ec2-metadata-token-ttl-seconds"),
            Some(ttl)
        );
        reply.body
    }

    fn get_with(&self, token: &str, path: &str) -> Reply {
        self.send(&req(
            Method::GET,
            path,
            &[("x-aws-ec2-metadata-token", token)],
        ))
    }
}

fn json(reply: &Reply) -> Value {
    serde_json::from_str(&reply.body).unwrap_or_else(|e| panic!("{e}: {}", reply.body))
}

#[test]
fn only_plain_http_port_80_to_the_metadata_names_is_metadata() {
    assert!(is_metadata_target("169.254.169.254", 80));
    assert!(is_metadata_target("metadata.google.internal", 80));
    assert!(!is_metadata_target("169.254.169.254", 8080));
    assert!(!is_metadata_target("169.254.169.253", 80));
    assert!(!is_metadata_target(
        "metadata.google.internal.evil.test",
        80
    ));
    assert!(!is_metadata_target("api.test", 80));
}

#[test]
fn imdsv2_hands_out_the_placeholder_with_an_expiration() {
    let imds = Imds::new(offer());
    let token = imds.token("21600");
    let roles = imds.get_with(&token, "/latest/meta-data/iam/security-credentials/");
    assert_eq!((roles.status.as_u16(), roles.body.as_str()), (200, "AWS"));
    let creds = imds.get_with(&token, "/latest/meta-data/iam/security-credentials/AWS");
    assert_eq!(creds.status, 200);
    let creds = json(&creds);
    for field in ["AccessKeyId", "SecretAccessKey", "Token"] {
        assert_eq!(creds[field], "__AWS__", "{field}");
    }
    assert_eq!(creds["Code"], "Success");
    assert_eq!(creds["Type"], "AWS-HMAC");
    let expiration = creds["Expiration"].as_str().unwrap_or_default();
    let expected = crate::text::rfc3339_seconds(imds.now + CREDENTIAL_LIFE);
    assert_eq!(expiration, expected, "an hour ahead, botocore's format");
    assert_eq!(expiration.len(), "2026-01-01T00:00:00Z".len());

    let zone = imds.get_with(&token, "/latest/meta-data/placement/availability-zone/");
    assert_eq!(zone.body, "eu-west-3a", "botocore's path, with the slash");
    let region = imds.get_with(&token, "/latest/meta-data/placement/region");
    assert_eq!(region.body, "eu-west-3");
}

#[test]
fn imdsv1_and_foreign_or_stale_tokens_get_401() {
    let imds = Imds::new(offer());
    let path = "/latest/meta-data/iam/security-credentials/AWS";
    let v1 = imds.send(&req(Method::GET, path, &[]));
    assert_eq!(v1.status, 401, "IMDSv1 refused");
    assert!(!v1.body.contains("__AWS__"));

    // A token of another task, of another process, expired, or tampered with.
    let mut other = Imds::new(offer());
    other.task = "other";
    other.key = SessionKey::random().unwrap_or_else(|| panic!("no randomness"));
    let theirs = other.token("60");
    assert_eq!(imds.get_with(&theirs, path).status, 401);
    let other_task = imds.key.issue("other", imds.now, 60);
    assert_eq!(imds.get_with(&other_task, path).status, 401);
    let expired = imds.key.issue(TASK, imds.now - Duration::from_secs(61), 60);
    assert_eq!(imds.get_with(&expired, path).status, 401);
    let good = imds.token("60");
    assert_eq!(imds.get_with(&good, path).status, 200);
    assert_eq!(imds.get_with(&format!("{good}x"), path).status, 401);
    // The token must be the only one.
    let twice = imds.send(&req(
        Method::GET,
        path,
        &[
            ("x-aws-ec2-metadata-token", &good),
            ("x-aws-ec2-metadata-token", &good),
        ],
    ));
    assert_eq!(twice.status, 401);
}

#[test]
fn token_requests_need_a_ttl_in_range_and_no_forwarding() {
    let imds = Imds::new(offer());
    for ttl in [
        "0",
        "21601",
        "-1",
        "abc",
        "",
        "+60",
        "60 ",
        "999999999999999999999",
    ] {
        let reply = imds.send(&req(
            Method::PUT,
            "/latest/api/token",
            &[("x-aws-ec2-metadata-token-ttl-seconds", ttl)],
        ));
        assert_eq!(reply.status, 400, "ttl {ttl:?}");
    }
    let missing = imds.send(&req(Method::PUT, "/latest/api/token", &[]));
    assert_eq!(missing.status, 400);
    let forwarded = imds.send(&req(
        Method::PUT,
        "/latest/api/token",
        &[
            ("x-aws-ec2-metadata-token-ttl-seconds", "60"),
            ("x-forwarded-for", "10.0.0.7"),
        ],
    ));
    assert_eq!(forwarded.status, 403);
    let get = imds.send(&req(
        Method::GET,
        "/latest/api/token",
        &[("x-aws-ec2-metadata-token-ttl-seconds", "60")],
    ));
    assert_eq!(get.status, 405);
    assert_eq!(imds.token("1").split('.').count(), 2);
}

#[test]
fn every_other_aws_path_is_404() {
    let imds = Imds::new(offer());
    let token = imds.token("60");
    for path in [
        "/latest/user-data",
        "/latest/dynamic/instance-identity/document",
        "/latest/meta-data/",
        "/latest/meta-data/ami-id",
        "/latest/meta-data/iam/info",
        "/latest/meta-data/iam/security-credentials/OTHER",
        "/latest/meta-data/iam/security-credentials/AWS/",
        "/latest/meta-data/iam/security-credentials//AWS",
        "/latest/meta-data/identity-credentials/ec2/security-credentials/ec2-instance",
        "/latest/meta-data/placement/availability-zone-id",
        "/latest",
        "/2021-01-03/meta-data/iam/security-credentials/",
        "/user-data",
    ] {
        let reply = imds.get_with(&token, path);
        assert_eq!(reply.status, 404, "{path}");
        assert!(!reply.body.contains("__"), "{path}: {}", reply.body);
    }
}

#[test]
fn region_only_when_the_secrets_name_exactly_one() {
    let mut two = offer();
    two.aws[0].region = None;
    let imds = Imds::new(two.clone());
    let token = imds.token("60");
    for path in [
        "/latest/meta-data/placement/region",
        "/latest/meta-data/placement/availability-zone",
    ] {
        assert_eq!(imds.get_with(&token, path).status, 404, "{path}");
    }
    two.aws.push(AwsRole {
        name: "AWS_2".into(),
        placeholder: "__AWS_2__".into(),
        region: Some("us-east-1".into()),
    });
    two.aws[0].region = Some("eu-west-3".into());
    let imds = Imds::new(two);
    let token = imds.token("60");
    assert_eq!(
        imds.get_with(&token, "/latest/meta-data/placement/region")
            .status,
        404,
        "two regions between them"
    );
    let roles = imds.get_with(&token, "/latest/meta-data/iam/security-credentials/");
    assert_eq!(roles.body, "AWS\nAWS_2");
    let second = imds.get_with(&token, "/latest/meta-data/iam/security-credentials/AWS_2");
    assert_eq!(json(&second)["AccessKeyId"], "__AWS_2__");
}

#[test]
fn a_policy_without_the_secret_answers_nothing() {
    let imds = Imds::new(Offer::default());
    let put = imds.send(&req(
        Method::PUT,
        "/latest/api/token",
        &[("x-aws-ec2-metadata-token-ttl-seconds", "60")],
    ));
    assert_eq!(put.status, 404);
    let gcp = imds.send(&req(
        Method::GET,
        "/computeMetadata/v1/instance/service-accounts/default/token",
        &[("metadata-flavor", "Google")],
    ));
    assert_eq!(gcp.status, 404);
    let azure = imds.send(&req(
        Method::GET,
        "/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https://management.azure.com/",
        &[("metadata", "true")],
    ));
    assert_eq!(azure.status, 404);
    for reply in [put, gcp, azure] {
        assert!(!reply.body.contains("__"), "{reply:?}");
    }
}

fn google(path: &str) -> Req {
    req(Method::GET, path, &[("metadata-flavor", "Google")])
}

#[test]
fn gcp_answers_google_auths_requests_with_the_flavor_header() {
    let imds = Imds::new(offer());
    let root = "/computeMetadata/v1/instance/service-accounts";
    let ping = imds.send(&google("/"));
    assert_eq!(ping.status, 200);
    assert_eq!(ping.header("metadata-flavor"), Some("Google"));

    let info = imds.send(&google(&format!("{root}/default/?recursive=true")));
    assert_eq!(info.status, 200);
    assert_eq!(info.header("content-type"), Some("application/json"));
    let info = json(&info);
    assert_eq!(info["email"], "agent@proj.iam.gserviceaccount.com");
    assert_eq!(
        info["scopes"][0],
        "https://www.googleapis.com/auth/cloud-platform"
    );

    for account in ["default", "agent@proj.iam.gserviceaccount.com"] {
        let token = imds.send(&google(&format!(
            "{root}/{account}/token?scopes=https://www.googleapis.com/auth/cloud-platform"
        )));
        assert_eq!(token.status, 200, "{account}");
        assert_eq!(token.header("metadata-flavor"), Some("Google"));
        let token = json(&token);
        assert_eq!(token["access_token"], "__GCP_TOKEN__");
        assert_eq!(token["token_type"], "Bearer");
        assert_eq!(token["expires_in"], 3600);
    }
    let email = imds.send(&google(&format!("{root}/default/email")));
    assert_eq!(email.body, "agent@proj.iam.gserviceaccount.com");
    let project = imds.send(&google("/computeMetadata/v1/project/project-id"));
    assert_eq!(
        (project.status.as_u16(), project.body.as_str()),
        (200, "proj")
    );
}

#[test]
fn gcp_without_the_header_is_403_and_other_paths_404() {
    let imds = Imds::new(offer());
    let token = "/computeMetadata/v1/instance/service-accounts/default/token";
    for headers in [
        &[][..],
        &[("metadata-flavor", "google")],
        &[("metadata-flavor", "Google "), ("x", "y")],
        &[
            ("metadata-flavor", "Google"),
            ("x-forwarded-for", "10.0.0.7"),
        ],
        &[("metadata", "true")],
    ] {
        let reply = imds.send(&req(Method::GET, token, headers));
        assert_eq!(reply.status, 403, "{headers:?}");
        assert_eq!(reply.header("metadata-flavor"), Some("Google"));
        assert!(!reply.body.contains("__GCP_TOKEN__"));
    }
    for path in [
        "/computeMetadata/v1/instance/attributes/",
        "/computeMetadata/v1/instance/attributes/kube-env",
        "/computeMetadata/v1/instance/id",
        "/computeMetadata/v1/instance/service-accounts/other@x.test/token",
        "/computeMetadata/v1/instance/service-accounts/default/identity?audience=x",
        "/computeMetadata/v1/project/attributes/ssh-keys",
        "/computeMetadata/v1/universe/universe-domain",
        "/computeMetadata/v1beta1/instance/service-accounts/default/token",
    ] {
        let reply = imds.send(&google(path));
        assert_eq!(reply.status, 404, "{path}");
        assert_eq!(reply.header("metadata-flavor"), Some("Google"));
    }
    let post = imds.send(&req(Method::POST, token, &[("metadata-flavor", "Google")]));
    assert_eq!(post.status, 405);
}

#[test]
fn gcp_without_a_known_identity_answers_default_and_no_project() {
    let mut imds = Imds::new(offer());
    imds.identity = None;
    let info = imds.send(&google(
        "/computeMetadata/v1/instance/service-accounts/default/?recursive=true",
    ));
    assert_eq!(json(&info)["email"], "default");
    let project = imds.send(&google("/computeMetadata/v1/project/project-id"));
    assert_eq!(project.status, 404);
}

fn azure(query: &str, headers: &[(&'static str, &str)]) -> Req {
    req(
        Method::GET,
        &format!("/metadata/identity/oauth2/token?{query}"),
        headers,
    )
}

#[test]
fn azure_answers_msals_token_request() {
    let imds = Imds::new(offer());
    let reply = imds.send(&azure(
        "api-version=2018-02-01&resource=https%3A%2F%2Fvault.azure.net",
        &[("metadata", "true")],
    ));
    assert_eq!(reply.status, 200, "{reply:?}");
    let body = json(&reply);
    assert_eq!(body["access_token"], "__AZURE_TOKEN__");
    assert_eq!(body["expires_in"], "3600", "a string, as Azure sends it");
    assert_eq!(body["resource"], "https://vault.azure.net");
    assert_eq!(body["token_type"], "Bearer");
    let on: u64 = body["expires_on"]
        .as_str()
        .unwrap_or("")
        .parse()
        .unwrap_or(0);
    assert_eq!(
        on,
        imds.now
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
            + 3600
    );
}

#[test]
fn azure_without_the_header_is_400_and_other_paths_404() {
    let imds = Imds::new(offer());
    let query = "api-version=2018-02-01&resource=https://management.azure.com/";
    for headers in [
        &[][..],
        &[("metadata", "false")],
        &[("metadata", "true"), ("x-forwarded-for", "10.0.0.7")],
        &[("metadata-flavor", "Google")],
    ] {
        let reply = imds.send(&azure(query, headers));
        assert_eq!(reply.status, 400, "{headers:?}");
        assert!(!reply.body.contains("__AZURE_TOKEN__"));
    }
    for bad in [
        "resource=https://management.azure.com/",
        "api-version=2018-02-01",
        "api-version=2018-02-01&resource=",
    ] {
        let reply = imds.send(&azure(bad, &[("metadata", "true")]));
        assert_eq!(reply.status, 400, "{bad}");
    }
    for path in [
        "/metadata/instance?api-version=2021-02-01",
        "/metadata/instance/compute/userData?api-version=2021-01-01&format=text",
        "/metadata/attested/document?api-version=2020-09-01",
        "/metadata/identity/oauth2/token/",
        "/metadata/scheduledevents?api-version=2020-07-01",
    ] {
        let reply = imds.send(&req(Method::GET, path, &[("metadata", "true")]));
        assert_eq!(reply.status, 404, "{path}");
    }
}

#[test]
fn paths_of_no_service_are_404() {
    let imds = Imds::new(offer());
    for path in [
        "/openstack/latest/meta_data.json",
        "/metadata",
        "/computeMetadata",
        "/x",
    ] {
        assert_eq!(imds.send(&google(path)).status, 404, "{path}");
    }
}

#[test]
fn credentials_expire_within_the_hour_or_with_the_task() {
    let now = SystemTime::now();
    assert_eq!(credentials_expire(now, None), now + CREDENTIAL_LIFE);
    let soon = Duration::from_secs(90);
    assert_eq!(credentials_expire(now, Some(soon)), now + soon);
    assert_eq!(
        credentials_expire(now, Some(Duration::from_secs(86_400))),
        now + CREDENTIAL_LIFE
    );
}

#[test]
fn a_service_account_key_gives_its_email_and_project() {
    let key = r#"{"type":"service_account","project_id":"p-1","private_key":"-----BEGIN PRIVATE KEY-----\nx\n-----END PRIVATE KEY-----\n","client_email":"a@p-1.iam.gserviceaccount.com"}"#;
    assert_eq!(
        parse_service_account(key),
        Some(GcpIdentity {
            email: "a@p-1.iam.gserviceaccount.com".into(),
            project_id: Some("p-1".into()),
        })
    );
    assert_eq!(parse_service_account(r#"{"project_id":"p"}"#), None);
    assert_eq!(parse_service_account("not json"), None);
}

#[test]
fn the_offer_is_what_the_policy_declares() {
    let text = r#"name: p
secrets:
  AWS:
    aws:
      credentials: { vault: { role: agent-s3 } }
      regions: [us-east-1]
    hosts: ["*.amazonaws.com"]
  AWS_WIDE:
    aws:
      credentials: { vault: { role: other } }
      regions: [us-east-1, eu-west-1]
    hosts: ["*.amazonaws.com"]
  AZURE_TOKEN:
    oauth2:
      token_url: https://login.test/token
      grant: client_credentials
      client_id: c
      client_secret: { env: AZ }
      metadata: azure
    hosts: [management.azure.com]
  GCP_SA:
    oauth2:
      token_url: https://oauth2.googleapis.test/token
      grant: jwt_bearer
      service_account: { file: /keys/sa.json }
      scopes: [https://www.googleapis.com/auth/cloud-platform]
    hosts: [storage.googleapis.com]
  GCP_TOKEN:
    oauth2:
      token_url: https://oauth2.googleapis.test/token
      grant: client_credentials
      client_id: c
      client_secret: { env: GC }
      scopes: [s1, s2]
      metadata: gcp
    hosts: [storage.googleapis.com]
  PLAIN:
    env: PLAIN
    hosts: [api.test]
rules:
  - host: api.test
"#;
    let (policy, _) = crate::policy::parse_policy(std::path::Path::new("/p/p.yaml"), text)
        .unwrap_or_else(|e| panic!("{e:?}"));
    let offer = Offer::from_policy(&policy);
    assert_eq!(
        offer.aws,
        vec![
            AwsRole {
                name: "AWS".into(),
                placeholder: "__AWS__".into(),
                region: Some("us-east-1".into()),
            },
            AwsRole {
                name: "AWS_WIDE".into(),
                placeholder: "__AWS_WIDE__".into(),
                region: None,
            },
        ]
    );
    assert_eq!(offer.aws_region(), Some("us-east-1"));
    assert_eq!(
        offer.azure,
        Some(AzureIdentity {
            placeholder: "__AZURE_TOKEN__".into()
        })
    );
    // Not jwt_bearer itself: the identity comes from the policy's jwt_bearer key.
    assert_eq!(
        offer.gcp,
        Some(GcpAccount {
            placeholder: "__GCP_TOKEN__".into(),
            scopes: vec!["s1".into(), "s2".into()],
            secret: "GCP_SA".into(),
            key: Some(KeySource::File {
                path: "/keys/sa.json".into()
            }),
        })
    );
}
