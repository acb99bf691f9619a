//! Extractors whose failures are `AppError`s: bad JSON, an oversize body or a bad query string
//! get the same `{ "error": … }` shape as everything else.

use std::net::{IpAddr, SocketAddr};

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Query, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use uuid::Uuid;

use super::error::AppError;
use crate::api::{Role, codes};

/// `axum::Json` with our errors.
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = AppError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(ApiJson(v)),
            Err(rej) => Err(json_rejection(rej)),
        }
    }
}

fn json_rejection(rej: JsonRejection) -> AppError {
    match rej {
        JsonRejection::MissingJsonContentType(_) => AppError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            codes::UNSUPPORTED_MEDIA_TYPE,
            "send the body as JSON with Content-Type: application/json",
        ),
        JsonRejection::BytesRejection(r) if r.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            AppError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                codes::BODY_TOO_LARGE,
                "request body is larger than this server accepts",
            )
        }
        JsonRejection::BytesRejection(_) => {
            AppError::bad_request("the request body could not be read")
        }
        // serde's message names the field and position, never anything of ours.
        JsonRejection::JsonSyntaxError(e) => AppError::new(
            StatusCode::BAD_REQUEST,
            codes::MALFORMED_JSON,
            format!("malformed JSON: {}", clip(&e.body_text())),
        ),
        JsonRejection::JsonDataError(e) => AppError::new(
            StatusCode::BAD_REQUEST,
            codes::MALFORMED_JSON,
            format!("JSON does not match the request: {}", clip(&e.body_text())),
        ),
        other => AppError::bad_request(clip(&other.body_text())),
    }
}

fn clip(s: &str) -> String {
    s.chars().take(300).collect()
}

/// `axum::extract::Query` with our errors.
pub struct ApiQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(v)) => Ok(ApiQuery(v)),
            Err(QueryRejection::FailedToDeserializeQueryString(e)) => Err(AppError::bad_request(
                format!("bad query string: {}", clip(&e.body_text())),
            )),
            Err(e) => Err(AppError::bad_request(clip(&e.body_text()))),
        }
    }
}

/// A path id; anything not a UUID answers like a missing object.
pub struct PathId(pub Uuid);

impl<S: Send + Sync> FromRequestParts<S> for PathId {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let axum::extract::Path(raw) =
            axum::extract::Path::<String>::from_request_parts(parts, state)
                .await
                .map_err(|_| AppError::not_found("object"))?;
        Uuid::parse_str(&raw)
            .map(PathId)
            .map_err(|_| AppError::not_found("object"))
    }
}

/// The authenticated caller, put in the request by the policy layer.
#[derive(Debug, Clone)]
pub struct Caller {
    pub id: Uuid,
    pub role: Role,
    pub name: String,
    pub email: String,
    pub token_hash: Vec<u8>,
}

impl Caller {
    pub fn id_str(&self) -> String {
        self.id.to_string()
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Caller>()
            .cloned()
            // Only a route declared public yet asking for a caller gets here: our bug.
            .ok_or_else(|| AppError::internal("handler needs a caller on a public route"))
    }
}

/// The client's address, for per-address rate limits: the socket's peer, or, when that peer
/// is one of `[server] trusted_proxies`, the nearest address in `X-Forwarded-For` that is not
/// a trusted proxy.
pub struct ClientIp(pub IpAddr);

impl FromRequestParts<super::AppState> for ClientIp {
    type Rejection = AppError;

    async fn from_request_parts(
        parts: &mut Parts,
        st: &super::AppState,
    ) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ci| ci.0.ip())
            .ok_or_else(|| AppError::internal("no connection info"))?;
        let proxies: Vec<(IpAddr, u8)> = st
            .config
            .trusted_proxies
            .iter()
            .filter_map(|p| parse_cidr(p))
            .collect();
        Ok(ClientIp(client_address(peer, &parts.headers, &proxies)))
    }
}

/// `10.0.0.5` or `10.0.0.0/8` (IPv4 or IPv6) as an address and prefix length.
pub fn parse_cidr(s: &str) -> Option<(IpAddr, u8)> {
    let (ip, bits) = match s.trim().split_once('/') {
        Some((ip, bits)) => (ip.parse::<IpAddr>().ok()?, bits.parse::<u8>().ok()?),
        None => {
            let ip = s.trim().parse::<IpAddr>().ok()?;
            (ip, if ip.is_ipv4() { 32 } else { 128 })
        }
    };
    let max = if ip.is_ipv4() { 32 } else { 128 };
    (bits <= max).then_some((ip, bits))
}

fn in_block(ip: IpAddr, (net, bits): (IpAddr, u8)) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    };
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(bits)).unwrap_or(0);
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(bits)).unwrap_or(0);
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

/// The rule of `ClientIp`, apart from the request.
pub fn client_address(
    peer: IpAddr,
    headers: &axum::http::HeaderMap,
    proxies: &[(IpAddr, u8)],
) -> IpAddr {
    let trusted = |ip: IpAddr| proxies.iter().any(|b| in_block(ip, *b));
    if !trusted(peer) {
        return peer;
    }
    // Right to left: each hop was appended by the proxy before it; the first address not of
    // a trusted proxy is the client. An unparsable entry stops the walk (not to be trusted).
    let hops: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    let mut client = peer;
    for hop in hops.iter().rev() {
        match hop.parse::<IpAddr>() {
            Ok(ip) => {
                client = ip;
                if !trusted(ip) {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    client
}
