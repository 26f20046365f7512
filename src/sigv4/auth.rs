//! The `Authorization` header of a SigV4-signed request.

use super::SigV4Error;

/// `ACCESS_KEY/DATE/REGION/SERVICE/aws4_request`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    /// Access key id.
    pub access_key: String,
    /// `YYYYMMDD`.
    pub date: String,
    /// Region, such as `us-east-1`.
    pub region: String,
    /// Service, such as `s3`.
    pub service: String,
}

impl Scope {
    /// `DATE/REGION/SERVICE/aws4_request`, the scope line of the string to sign.
    pub fn credential_scope(&self) -> String {
        format!(
            "{}/{}/{}/aws4_request",
            self.date, self.region, self.service
        )
    }

    /// Parses `ACCESS_KEY/DATE/REGION/SERVICE/aws4_request`.
    pub fn parse(credential: &str) -> Result<Scope, SigV4Error> {
        let mut parts = credential.split('/');
        let mut next = |what| {
            parts
                .next()
                .filter(|p| !p.is_empty())
                .ok_or(SigV4Error::Malformed(what))
        };
        let access_key = next("Credential has no access key id")?.to_string();
        let date = next("Credential has no date")?.to_string();
        let region = next("Credential has no region")?.to_string();
        let service = next("Credential has no service")?.to_string();
        if next("Credential does not end in aws4_request")? != "aws4_request"
            || parts.next().is_some()
        {
            return Err(SigV4Error::Malformed(
                "Credential does not end in aws4_request",
            ));
        }
        if date.len() != 8 || !date.bytes().all(|b| b.is_ascii_digit()) {
            return Err(SigV4Error::Malformed("Credential date is not YYYYMMDD"));
        }
        let token = |s: &str| {
            s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        };
        if !token(&region) || !token(&service) || !access_key.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(SigV4Error::Malformed(
                "Credential has characters it cannot have",
            ));
        }
        Ok(Scope {
            access_key,
            date,
            region,
            service,
        })
    }
}

/// A parsed `Authorization: AWS4-HMAC-SHA256 …` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization {
    /// Who signed, and for what.
    pub scope: Scope,
    /// Lower-case header names, in the order given (SigV4 requires sorted).
    pub signed_headers: Vec<String>,
    /// Lower-case hex signature.
    pub signature: String,
}

/// Parses a SigV4 `Authorization` header value.
pub fn parse_authorization(value: &str) -> Result<Authorization, SigV4Error> {
    let value = value.trim();
    let (algorithm, rest) = value.split_once(' ').unwrap_or((value, ""));
    if algorithm != "AWS4-HMAC-SHA256" {
        let shown: String = algorithm
            .chars()
            .take(32)
            .filter(|c| c.is_ascii_graphic())
            .collect();
        return Err(SigV4Error::Algorithm(shown));
    }
    let (mut credential, mut signed, mut signature) = (None, None, None);
    for part in rest.split(',') {
        let Some((key, val)) = part.trim().split_once('=') else {
            return Err(SigV4Error::Malformed("a part is not key=value"));
        };
        let slot = match key {
            "Credential" => &mut credential,
            "SignedHeaders" => &mut signed,
            "Signature" => &mut signature,
            _ => return Err(SigV4Error::Malformed("unknown part")),
        };
        if slot.replace(val).is_some() {
            return Err(SigV4Error::Malformed("a part is repeated"));
        }
    }
    let scope = Scope::parse(credential.ok_or(SigV4Error::Malformed("no Credential"))?)?;
    let signed = signed.ok_or(SigV4Error::Malformed("no SignedHeaders"))?;
    let signed_headers: Vec<String> = signed.split(';').map(str::to_string).collect();
    let valid_name = |h: &String| {
        !h.is_empty()
            && h.bytes().all(|b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.')
            })
    };
    if !signed_headers.iter().all(valid_name) {
        return Err(SigV4Error::Malformed(
            "SignedHeaders is not a list of lower-case header names",
        ));
    }
    if !signed_headers.windows(2).all(|w| w[0] < w[1]) {
        return Err(SigV4Error::Malformed("SignedHeaders is not sorted"));
    }
    let signature = signature.ok_or(SigV4Error::Malformed("no Signature"))?;
    if !super::is_signature(signature) {
        return Err(SigV4Error::Malformed(
            "Signature is not 64 lower-case hex digits",
        ));
    }
    Ok(Authorization {
        scope,
        signed_headers,
        signature: signature.to_string(),
    })
}
