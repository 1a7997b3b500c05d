//! Continue tokens of paginated lists: the snapshot revision and the last key returned, encoded as
//! URL-safe base64 JSON. Opaque to clients; validated on the way back in.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use crate::backend::ListCursor;
use crate::error::{Error, Result};

const VERSION: &str = "coxswain/v1";

#[derive(Serialize, Deserialize)]
struct Token {
    v: String,
    rv: u64,
    start: (String, String, String),
}

pub(crate) fn encode(revision: u64, after: &ListCursor) -> String {
    let token = Token {
        v: VERSION.into(),
        rv: revision,
        start: (after.cluster.clone(), after.namespace.clone(), after.name.clone()),
    };
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(&token).unwrap_or_default())
}

pub(crate) fn decode(text: &str) -> Result<(u64, ListCursor)> {
    let bytes = URL_SAFE_NO_PAD
        .decode(text.trim_end_matches('='))
        .map_err(|err| Error::InvalidContinue(format!("not base64: {err}")))?;
    let token: Token =
        serde_json::from_slice(&bytes).map_err(|err| Error::InvalidContinue(format!("malformed: {err}")))?;
    if token.v != VERSION {
        return Err(Error::InvalidContinue(format!("unknown version {:?}", token.v)));
    }
    if token.rv == 0 {
        return Err(Error::InvalidContinue("revision must be positive".into()));
    }
    let (cluster, namespace, name) = token.start;
    Ok((
        token.rv,
        ListCursor {
            cluster,
            namespace,
            name,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_garbage_is_rejected() {
        let cursor = ListCursor {
            cluster: "a".into(),
            namespace: "ns/1".into(),
            name: "x%_ü".into(),
        };
        let (rv, back) = decode(&encode(7, &cursor)).unwrap();
        assert_eq!((rv, back), (7, cursor));
        for bad in [
            "",
            "!!!",
            "e30",
            "eyJ2IjoieCIsInJ2IjoxLCJzdGFydCI6WyIiLCIiLCIiXX0",
        ] {
            assert!(matches!(decode(bad), Err(Error::InvalidContinue(_))), "{bad}");
        }
    }
}
