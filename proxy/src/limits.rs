//! Request limits (`[limits]`): what a viewer's request may carry before the proxy does any
//! work for it. pingora already refuses, with a bare 400, a request head over 1 MiB or with more
//! than 256 headers (`pingora-core` `MAX_HEADER_SIZE`, `MAX_HEADERS`); these are tighter and
//! answer with the status a client can act on (RFC 9110 §15.5.15, RFC 6585 §5), a plain-text
//! reason and a log line.
//!
//! The limits on what a plugin returns (edit count, plan size, pod length, personalized
//! manifest size) are in [`crate::apply`] and fail the plugin call as an invalid plan, so the
//! tenant's failure policy decides what the viewer gets.

use crate::invalid::Invalid;
use http::HeaderMap;
use serde::Deserialize;

/// `[limits]` in the config file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Longest request target (path and query), in bytes: longer gets 414.
    #[serde(default = "default_max_uri_len")]
    pub max_uri_len: usize,
    /// Most bytes of request headers (names and values, plus 4 per header for `: ` and CRLF):
    /// more gets 431.
    #[serde(default = "default_max_header_bytes")]
    pub max_header_bytes: usize,
    /// Most request headers: more gets 431.
    #[serde(default = "default_max_headers")]
    pub max_headers: usize,
}

fn default_max_uri_len() -> usize {
    8 * 1024
}
fn default_max_header_bytes() -> usize {
    32 * 1024
}
fn default_max_headers() -> usize {
    100
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_uri_len: default_max_uri_len(),
            max_header_bytes: default_max_header_bytes(),
            max_headers: default_max_headers(),
        }
    }
}

/// pingora's own ceilings: a limit above them would never be reached.
const PINGORA_MAX_HEADER_SIZE: usize = 1_048_575;
const PINGORA_MAX_HEADERS: usize = 256;

impl Limits {
    /// Checks the values: the failing field (below `limits.`) and why.
    pub fn validate(&self) -> Result<(), Invalid> {
        let check = |field: &str, v: usize, min: usize, max: usize| {
            if v < min || v > max {
                Err(Invalid::new(
                    format!("limits.{field}"),
                    format!("must be between {min} and {max}"),
                ))
            } else {
                Ok(())
            }
        };
        check(
            "max_uri_len",
            self.max_uri_len,
            256,
            PINGORA_MAX_HEADER_SIZE,
        )?;
        check(
            "max_header_bytes",
            self.max_header_bytes,
            1024,
            PINGORA_MAX_HEADER_SIZE,
        )?;
        check("max_headers", self.max_headers, 8, PINGORA_MAX_HEADERS)?;
        Ok(())
    }

    /// Whether a request head is within the limits: the status and reason to answer with if
    /// it is not.
    pub fn check(&self, target_len: usize, headers: &HeaderMap) -> Result<(), Refused> {
        if target_len > self.max_uri_len {
            return Err(Refused {
                status: 414,
                detail: "uri-too-long",
                message: format!(
                    "request URI of {target_len} bytes exceeds the {}-byte limit",
                    self.max_uri_len
                ),
            });
        }
        if headers.len() > self.max_headers {
            return Err(Refused {
                status: 431,
                detail: "too-many-headers",
                message: format!(
                    "{} request headers exceed the limit of {}",
                    headers.len(),
                    self.max_headers
                ),
            });
        }
        let bytes: usize = headers
            .iter()
            .map(|(k, v)| k.as_str().len() + v.len() + 4)
            .sum();
        if bytes > self.max_header_bytes {
            return Err(Refused {
                status: 431,
                detail: "headers-too-large",
                message: format!(
                    "request headers of {bytes} bytes exceed the {}-byte limit",
                    self.max_header_bytes
                ),
            });
        }
        Ok(())
    }
}

/// A request refused by a limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub status: u16,
    /// For `Cache-Status` (`detail=`) and the log line.
    pub detail: &'static str,
    pub message: String,
}

/// The length of a request target as the client sent it (path and query, and scheme and
/// authority in the absolute form).
pub fn target_len(uri: &http::Uri) -> usize {
    uri.scheme_str().map_or(0, |s| s.len() + 3)
        + uri.authority().map_or(0, |a| a.as_str().len())
        + uri.path_and_query().map_or(0, |pq| pq.as_str().len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(n: usize, value_len: usize) -> HeaderMap {
        let mut h = HeaderMap::new();
        for i in 0..n {
            h.insert(
                http::HeaderName::from_bytes(format!("x-h{i}").as_bytes()).unwrap(),
                HeaderValue::from_str(&"v".repeat(value_len)).unwrap(),
            );
        }
        h
    }

    #[test]
    fn defaults_pass_ordinary_requests_and_refuse_oversize_ones() {
        let l = Limits::default();
        assert_eq!(l.validate(), Ok(()));
        assert_eq!(l.check(100, &headers(20, 100)), Ok(()));
        let e = l.check(8 * 1024 + 1, &headers(1, 1)).unwrap_err();
        assert_eq!((e.status, e.detail), (414, "uri-too-long"));
        assert!(e.message.contains("8193 bytes"), "{}", e.message);
        assert_eq!(l.check(8 * 1024, &headers(1, 1)), Ok(()));
        let e = l.check(10, &headers(101, 1)).unwrap_err();
        assert_eq!((e.status, e.detail), (431, "too-many-headers"));
        assert_eq!(l.check(10, &headers(100, 1)), Ok(()));
        let e = l.check(10, &headers(4, 9000)).unwrap_err();
        assert_eq!((e.status, e.detail), (431, "headers-too-large"));
        assert!(e.message.contains("32768-byte limit"), "{}", e.message);
    }

    #[test]
    fn values_outside_what_pingora_reads_are_refused() {
        for (l, field) in [
            (
                Limits {
                    max_uri_len: 10,
                    ..Limits::default()
                },
                "limits.max_uri_len",
            ),
            (
                Limits {
                    max_headers: 1000,
                    ..Limits::default()
                },
                "limits.max_headers",
            ),
            (
                Limits {
                    max_header_bytes: 2 << 20,
                    ..Limits::default()
                },
                "limits.max_header_bytes",
            ),
        ] {
            assert_eq!(l.validate().unwrap_err().field, field);
        }
    }

    #[test]
    fn target_length_counts_path_and_query() {
        let u: http::Uri = "/a/b.m3u8?x=1".parse().unwrap();
        assert_eq!(target_len(&u), 13);
        let u: http::Uri = "http://h.tv/a?q".parse().unwrap();
        assert_eq!(target_len(&u), 15);
    }
}
