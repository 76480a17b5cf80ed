//! The one error type of the core. Every failure knows its [`ErrorKind`], which maps once to an
//! HTTP status, a gRPC code and the V2 error body `{"error": "..."}`.

use std::fmt::Display;

use crate::codec::json_write;

/// What went wrong, from the point of view of the caller that must answer a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The request is malformed or breaks a protocol rule (HTTP 400, `INVALID_ARGUMENT`).
    BadRequest,
    /// The request body is larger than the configured limit (HTTP 413, `RESOURCE_EXHAUSTED`).
    PayloadTooLarge,
    /// The named model or resource does not exist (HTTP 404, `NOT_FOUND`).
    NotFound,
    /// The model or server cannot serve right now (HTTP 503, `UNAVAILABLE`).
    Unavailable,
    /// A valid request for something this server does not do (HTTP 501, `UNIMPLEMENTED`).
    Unsupported,
    /// Too many requests in flight for a model: shed instead of queued (HTTP 503,
    /// `RESOURCE_EXHAUSTED`).
    Overloaded,
    /// The backend did not answer in time (HTTP 504, `DEADLINE_EXCEEDED`).
    Timeout,
    /// The backend answered with something that is not a valid response (HTTP 502, `UNAVAILABLE`).
    BadGateway,
    /// A bug or broken invariant on our side (HTTP 500, `INTERNAL`).
    Internal,
}

/// Which side of the gateway an error comes from. Upstream errors keep the backend's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Origin {
    /// The client's request (or our own limits applied to it).
    #[default]
    Client,
    /// A backend: its answer, or the failure to reach it.
    Upstream,
}

impl ErrorKind {
    pub fn http_status(self) -> u16 {
        match self {
            Self::BadRequest => 400,
            Self::PayloadTooLarge => 413,
            Self::NotFound => 404,
            Self::Unavailable => 503,
            Self::Unsupported => 501,
            Self::Overloaded => 503,
            Self::Timeout => 504,
            Self::BadGateway => 502,
            Self::Internal => 500,
        }
    }

    pub fn grpc_code(self) -> tonic::Code {
        match self {
            Self::BadRequest => tonic::Code::InvalidArgument,
            Self::PayloadTooLarge => tonic::Code::ResourceExhausted,
            Self::NotFound => tonic::Code::NotFound,
            Self::Unavailable => tonic::Code::Unavailable,
            Self::Unsupported => tonic::Code::Unimplemented,
            Self::Overloaded => tonic::Code::ResourceExhausted,
            Self::Timeout => tonic::Code::DeadlineExceeded,
            Self::BadGateway => tonic::Code::Unavailable,
            Self::Internal => tonic::Code::Internal,
        }
    }

    /// The kind of an HTTP error status received from a backend.
    pub fn from_http_status(status: u16) -> Self {
        match status {
            404 => Self::NotFound,
            413 => Self::PayloadTooLarge,
            501 => Self::Unsupported,
            502 => Self::BadGateway,
            503 | 429 => Self::Unavailable,
            504 => Self::Timeout,
            400..=499 => Self::BadRequest,
            _ => Self::Internal,
        }
    }

    /// The kind of a gRPC status received from a backend.
    pub fn from_grpc_code(code: tonic::Code) -> Self {
        use tonic::Code;
        match code {
            Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => Self::BadRequest,
            Code::NotFound => Self::NotFound,
            Code::Unavailable | Code::Cancelled | Code::Aborted => Self::Unavailable,
            Code::ResourceExhausted => Self::Overloaded,
            Code::Unimplemented => Self::Unsupported,
            Code::DeadlineExceeded => Self::Timeout,
            _ => Self::Internal,
        }
    }
}

/// An error with its kind and a message that names the offending item and the rule it broke.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Error {
    kind: ErrorKind,
    message: String,
    origin: Origin,
    /// The backend's own HTTP status, kept as is (a backend 422 stays a 422).
    status: Option<u16>,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            origin: Origin::Client,
            status: None,
        }
    }

    /// An error answered or caused by a backend.
    pub fn upstream(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            origin: Origin::Upstream,
            ..Self::new(kind, message)
        }
    }

    /// A backend's HTTP error status and message, both kept.
    pub fn upstream_status(status: u16, message: impl Into<String>) -> Self {
        Self {
            status: Some(status),
            ..Self::upstream(ErrorKind::from_http_status(status), message)
        }
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unavailable, message)
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::BadRequest, message)
    }

    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::PayloadTooLarge, message)
    }

    pub fn unsupported(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unsupported, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }

    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    pub fn origin(&self) -> Origin {
        self.origin
    }

    pub fn http_status(&self) -> u16 {
        self.status.unwrap_or_else(|| self.kind.http_status())
    }

    pub fn grpc_code(&self) -> tonic::Code {
        self.kind.grpc_code()
    }

    /// Prefixes the message with where the error happened, e.g. `input 'x': `.
    #[must_use]
    pub fn context(mut self, context: impl Display) -> Self {
        self.message = format!("{context}: {}", self.message);
        self
    }

    /// The V2 error body, `{"error": "<message>"}`.
    pub fn to_json_body(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.message.len() + 16);
        out.extend_from_slice(b"{\"error\":");
        json_write::string(&mut out, &self.message);
        out.push(b'}');
        out
    }
}

/// Adds context to the error of a `Result`, lazily.
pub trait ResultExt<T> {
    fn context_with<C: Display>(self, context: impl FnOnce() -> C) -> Result<T>;
}

impl<T> ResultExt<T> for Result<T> {
    fn context_with<C: Display>(self, context: impl FnOnce() -> C) -> Result<T> {
        self.map_err(|e| e.context(context()))
    }
}
