//! What a task's policy lets the emulated metadata services hand out: the
//! placeholders of its `aws` secrets and of the `oauth2` secrets marked
//! `metadata: gcp` or `metadata: azure`. Never a value: the real credentials stay
//! in tollgate and replace the placeholders on the way out.

use crate::policy::model::{KeySource, MetadataFlavor, OAuthGrant, Policy, SecretSource};

/// The placeholders a policy offers, per cloud.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Offer {
    /// One IMDS role per `aws` secret, in name order.
    pub aws: Vec<AwsRole>,
    /// The `oauth2` secret with `metadata: gcp` (the first by name).
    pub gcp: Option<GcpAccount>,
    /// The `oauth2` secret with `metadata: azure` (the first by name).
    pub azure: Option<AzureIdentity>,
}

/// An `aws` secret as an IMDS role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsRole {
    /// Role name: the secret's name.
    pub name: String,
    /// The placeholder answered as key id, secret key and session token.
    pub placeholder: String,
    /// The region, when the secret names exactly one.
    pub region: Option<String>,
}

/// The GCP service account the metadata server speaks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GcpAccount {
    /// The access token's placeholder.
    pub placeholder: String,
    /// Its scopes.
    pub scopes: Vec<String>,
    /// The secret's name (for reading its key).
    pub secret: String,
    /// The service-account JSON key whose `client_email` and `project_id` are
    /// answered: the secret's own for `jwt_bearer`, else the first
    /// `jwt_bearer` secret's of the policy.
    pub key: Option<KeySource>,
}

/// The Azure managed identity the IMDS speaks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AzureIdentity {
    /// The access token's placeholder.
    pub placeholder: String,
}

/// The non-secret fields of a service-account key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GcpIdentity {
    /// `client_email`.
    pub email: String,
    /// `project_id`, if the key has one.
    pub project_id: Option<String>,
}

impl Offer {
    /// What `policy` declares.
    pub fn from_policy(policy: &Policy) -> Self {
        let mut offer = Offer::default();
        let first_jwt_key = policy.secrets.values().find_map(|spec| match &spec.source {
            SecretSource::OAuth2(client) => match &client.grant {
                OAuthGrant::JwtBearer(key) => Some((spec.name.to_string(), key.clone())),
                _ => None,
            },
            _ => None,
        });
        for spec in policy.secrets.values() {
            match &spec.source {
                SecretSource::Aws(aws) => offer.aws.push(AwsRole {
                    name: spec.name.to_string(),
                    placeholder: spec.name.placeholder(),
                    region: match aws.regions.as_slice() {
                        [one] => Some(one.clone()),
                        _ => None,
                    },
                }),
                SecretSource::OAuth2(client) => match client.metadata {
                    Some(MetadataFlavor::Gcp) if offer.gcp.is_none() => {
                        let (secret, key) = match &client.grant {
                            OAuthGrant::JwtBearer(key) => {
                                (spec.name.to_string(), Some(key.clone()))
                            }
                            _ => match &first_jwt_key {
                                Some((name, key)) => (name.clone(), Some(key.clone())),
                                None => (spec.name.to_string(), None),
                            },
                        };
                        offer.gcp = Some(GcpAccount {
                            placeholder: spec.name.placeholder(),
                            scopes: client.scopes.clone(),
                            secret,
                            key,
                        });
                    }
                    Some(MetadataFlavor::Azure) if offer.azure.is_none() => {
                        offer.azure = Some(AzureIdentity {
                            placeholder: spec.name.placeholder(),
                        });
                    }
                    _ => {}
                },
                _ => {}
            }
        }
        offer
    }

    /// The region the IMDS answers: the one region the `aws` secrets name, if
    /// they name exactly one between them.
    pub fn aws_region(&self) -> Option<&str> {
        let mut regions = self.aws.iter().filter_map(|r| r.region.as_deref());
        let first = regions.next()?;
        regions.all(|r| r == first).then_some(first)
    }
}

/// The identity in a service-account JSON key, or `None` when it has no
/// `client_email`.
pub fn parse_service_account(key_json: &str) -> Option<GcpIdentity> {
    let value: serde_json::Value = serde_json::from_str(key_json).ok()?;
    let email = value.get("client_email")?.as_str()?.to_string();
    let project_id = value
        .get("project_id")
        .and_then(|p| p.as_str())
        .map(str::to_string);
    Some(GcpIdentity { email, project_id })
}
