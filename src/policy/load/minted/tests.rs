use crate::policy::model::{
    AwsCredentials, ClientAuth, Installation, KeySource, MintScope, OAuthGrant, SecretSource,
};
use crate::policy::parse_policy;
use std::path::Path;

fn load(secrets: &str) -> Result<SecretSource, (Option<usize>, String)> {
    let text =
        format!("name: p\nsecrets:\n{secrets}rules:\n  - host: api.github.com\n    inject: [T]\n");
    parse_policy(Path::new("/etc/tollgate/policies/p.yaml"), &text)
        .map(|(p, _)| {
            p.secrets
                .into_values()
                .next()
                .map(|s| s.source)
                .unwrap_or(SecretSource::Env {
                    name: String::new(),
                })
        })
        .map_err(|e| (e.line, e.message))
}

#[test]
fn github_app_as_in_the_design() {
    let source = load(
        "  T:
    github_app:
      app_id: 123456
      owner: acme
      private_key: { vault: { mount: secret, path: github/app, field: private_key } }
      repositories: [widgets, docs]
      permissions: { contents: read, pull_requests: write }
    hosts: [api.github.com, github.com]
",
    )
    .unwrap_or_else(|e| panic!("{e:?}"));
    let SecretSource::GithubApp(app) = source else {
        panic!("not a github_app: {source:?}")
    };
    assert_eq!(app.app_id, 123456);
    assert_eq!(app.installation, Installation::Owner("acme".into()));
    assert_eq!(app.api, "https://api.github.com");
    assert_eq!(app.repositories, ["widgets", "docs"]);
    assert_eq!(app.permissions["pull_requests"], "write");
    assert_eq!(
        app.describe(),
        "github_app: minted per task, repos widgets, docs"
    );
}

#[test]
fn a_relative_key_file_is_relative_to_the_policy_file() {
    let source = load(
        "  T:
    github_app:
      app_id: 1
      installation_id: 2
      private_key: { file: keys/app.pem }
      api: https://ghe.example.com/api/v3/
    hosts: [ghe.example.com]
",
    )
    .unwrap_or_else(|e| panic!("{e:?}"));
    let SecretSource::GithubApp(app) = source else {
        panic!("not a github_app")
    };
    assert_eq!(
        app.private_key,
        KeySource::File {
            path: "/etc/tollgate/policies/keys/app.pem".into()
        }
    );
    assert_eq!(app.api, "https://ghe.example.com/api/v3");
}

#[test]
fn oauth2_grants() {
    let source = load(
        "  T:
    oauth2:
      token_url: https://login.example.com/oauth2/token
      grant: refresh_token
      client_id: agents
      client_secret: { env: CRM_SECRET }
      client_auth: client_secret_post
      refresh_token: { vault: { path: crm/refresh, field: token } }
      scopes: [api.read, \"offline_access\"]
      per: policy
    hosts: [api.example.com]
",
    )
    .unwrap_or_else(|e| panic!("{e:?}"));
    let SecretSource::OAuth2(o) = source else {
        panic!("not oauth2")
    };
    assert_eq!(o.client_auth, ClientAuth::Post);
    assert_eq!(o.per, MintScope::Policy);
    assert_eq!(
        o.grant,
        OAuthGrant::RefreshToken(KeySource::Vault {
            mount: "secret".into(),
            path: "crm/refresh".into(),
            field: "token".into()
        })
    );
}

fn refused(secrets: &str, needle: &str, line: usize) {
    match load(secrets) {
        Ok(s) => panic!("accepted: {s:?}"),
        Err((at, message)) => {
            assert!(message.contains(needle), "{message}");
            assert_eq!(at, Some(line), "{message}");
        }
    }
}

#[test]
fn broken_blocks_are_refused_with_their_line() {
    let app = |body: &str| format!("  T:\n    github_app:\n{body}    hosts: [api.github.com]\n");
    refused(
        &app("      app_id: 1\n      private_key: { env: K }\n"),
        "needs `installation_id` or `owner`",
        4,
    );
    refused(
        &app("      app_id: 1\n      installation_id: 2\n      owner: acme\n      private_key: { env: K }\n"),
        "both `installation_id` and `owner`",
        4,
    );
    refused(
        &app("      app_id: 1\n      installation_id: 2\n"),
        "needs `private_key`",
        4,
    );
    refused(
        &app("      app_id: 1\n      installation_id: 2\n      private_key: {}\n"),
        "private_key needs a source",
        7,
    );
    refused(
        &app("      app_id: 1\n      installation_id: 2\n      private_key: { env: K, file: k.pem }\n"),
        "more than one source",
        7,
    );
    refused(
        &app("      app_id: 1\n      installation_id: 2\n      private_key: { env: K }\n      permissions: { contents: all }\n"),
        "must be read, write or admin",
        8,
    );
    refused(
        &app("      app_id: 1\n      installation_id: 2\n      private_key: { env: K }\n      api: http://ghe.test/api/v3\n"),
        "must be an https:// URL",
        8,
    );
    refused(
        &app("      app_id: 1\n      installation_id: 2\n      private_key: { env: K }\n      repositories: [acme/widgets]\n"),
        "bare repository name",
        8,
    );
    // serde's own errors carry the line of the offending key.
    refused(
        &app("      app_id: 1\n      installation_id: 2\n      private_key: { env: K }\n      permisions: {}\n"),
        "unknown field `permisions`",
        8,
    );
    let oauth = |body: &str| format!("  T:\n    oauth2:\n{body}    hosts: [api.example.com]\n");
    refused(
        &oauth("      token_url: https://l.example.com/t\n      grant: password\n"),
        "unknown variant `password`",
        6,
    );
    refused(
        &oauth("      token_url: https://l.example.com/t\n      grant: client_credentials\n      client_id: a\n"),
        "needs `client_id` and `client_secret`",
        6,
    );
    refused(
        &oauth("      token_url: https://l.example.com/t\n      grant: jwt_bearer\n"),
        "needs `service_account`",
        6,
    );
    refused(
        &oauth("      token_url: https://l.example.com/t\n      grant: refresh_token\n      client_id: a\n"),
        "needs `refresh_token`",
        6,
    );
    refused(
        &oauth("      token_url: https://l.example.com/t\n      grant: client_credentials\n      client_id: a\n      client_secret: { env: S }\n      scopes: [\"a b\"]\n"),
        "not a valid OAuth scope",
        9,
    );
    refused(
        "  T:\n    env: X\n    oauth2: { token_url: \"https://l.example.com/t\", grant: jwt_bearer, service_account: { env: K } }\n    hosts: [api.example.com]\n",
        "more than one source",
        3,
    );
}

#[test]
fn a_refresh_token_from_the_environment_is_warned_about() {
    let text = "name: p
secrets:
  T:
    oauth2:
      token_url: https://l.example.com/t
      grant: refresh_token
      client_id: a
      refresh_token: { env: R }
    hosts: [api.example.com]
rules:
  - host: api.example.com
    inject: [T]
";
    let (_, warnings) = parse_policy(Path::new("p.yaml"), text).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        warnings
            .iter()
            .any(|w| w.message.contains("cannot be written back")),
        "{warnings:?}"
    );
}

#[test]
fn aws_blocks() {
    let source = load(
        "  T:
    aws:
      credentials: { vault: { role: agent-s3 } }
      regions: [us-east-1]
      services: [s3, sqs]
    hosts: [\"*.amazonaws.com\"]
",
    )
    .unwrap_or_else(|e| panic!("{e:?}"));
    let SecretSource::Aws(aws) = source else {
        panic!("{source:?}")
    };
    assert_eq!(
        aws.credentials,
        AwsCredentials::Vault {
            mount: "aws".into(),
            role: "agent-s3".into()
        }
    );
    assert_eq!(
        aws.describe(),
        "aws: vault aws/agent-s3, leased per task, regions us-east-1, services s3 sqs"
    );

    let source = load(
        "  T:
    aws:
      credentials:
        access_key_id: { env: AKID }
        secret_access_key: { vault: { path: aws/static, field: secret } }
    hosts: [\"*.amazonaws.com\"]
",
    )
    .unwrap_or_else(|e| panic!("{e:?}"));
    assert!(
        matches!(&source, SecretSource::Aws(aws) if matches!(aws.credentials, AwsCredentials::Static { .. })),
        "{source:?}"
    );

    let aws = |body: &str| format!("  T:\n    aws:\n{body}    hosts: [s3.amazonaws.com]\n");
    refused(
        &aws("      credentials: { access_key_id: { env: A } }\n"),
        "need both",
        5,
    );
    refused(
        &aws("      credentials: { vault: { role: \"../sys\" } }\n"),
        "one path segment",
        5,
    );
    refused(
        &aws("      credentials: { vault: { role: r }, access_key_id: { env: A }, secret_access_key: { env: B } }\n"),
        "pick one",
        5,
    );
    refused(
        &aws("      credentials: { vault: { role: r } }\n      regions: [\"us-east-1\", \"*\"]\n"),
        "aws regions entry `*`",
        6,
    );
    refused(
        &aws("      credentials: { vault: { role: r } }\n      services: [S3]\n"),
        "aws services entry `S3`",
        6,
    );
}

#[test]
fn an_upper_case_scheme_is_kept_lower_case() {
    // Found by the `config` fuzz target: `Https://` parses as https, and the
    // URL the minter posts to and signs into a JWT's `aud` is written `https://`.
    let source = load(
        "  T:\n    oauth2: { token_url: \"Https://l.example.com/t\", grant: client_credentials, client_id: a, client_secret: { env: S } }\n    hosts: [api.example.com]\n",
    )
    .unwrap_or_else(|e| panic!("{e:?}"));
    let SecretSource::OAuth2(oauth) = source else {
        panic!("not oauth2: {source:?}")
    };
    assert_eq!(oauth.token_url, "https://l.example.com/t");
}
