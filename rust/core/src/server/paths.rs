//! The REST routes of KServe's data plane (V1 and V2 / OIP), matched on slices of the path
//! without allocating.

use http::Method;

/// A matched REST endpoint; names borrow from the request path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint<'p> {
    Root,
    Metrics,
    V1Models,
    V1Model(&'p str),
    V1Predict(&'p str),
    V1Explain(&'p str),
    ServerMetadata,
    Live,
    Ready,
    V2Models,
    ModelMetadata(Model<'p>),
    ModelReady(Model<'p>),
    Infer(Model<'p>),
    Load(&'p str),
    Unload(&'p str),
}

/// A model and optional version from a `/v2/models/{m}[/versions/{v}]` path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Model<'p> {
    pub name: &'p str,
    pub version: Option<&'p str>,
}

/// Why a request matched no endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mismatch {
    NotFound,
    /// The path exists for these other methods.
    MethodNotAllowed(&'static str),
}

impl<'p> Endpoint<'p> {
    pub fn model(&self) -> Option<&'p str> {
        match self {
            Self::V1Model(m)
            | Self::V1Predict(m)
            | Self::V1Explain(m)
            | Self::Load(m)
            | Self::Unload(m) => Some(m),
            Self::ModelMetadata(m) | Self::ModelReady(m) | Self::Infer(m) => Some(m.name),
            _ => None,
        }
    }

    /// The method the endpoint answers.
    fn method(&self) -> &'static str {
        match self {
            Self::V1Predict(_)
            | Self::V1Explain(_)
            | Self::Infer(_)
            | Self::Load(_)
            | Self::Unload(_) => "POST",
            _ => "GET",
        }
    }
}

/// Matches `method` and `path` against the routes.
pub fn parse<'p>(method: &Method, path: &'p str) -> Result<Endpoint<'p>, Mismatch> {
    let endpoint = endpoint(path).ok_or(Mismatch::NotFound)?;
    let allowed = endpoint.method();
    if method.as_str() == allowed || (allowed == "GET" && method == Method::HEAD) {
        Ok(endpoint)
    } else {
        Err(Mismatch::MethodNotAllowed(allowed))
    }
}

fn endpoint(path: &str) -> Option<Endpoint<'_>> {
    let path = path
        .strip_suffix('/')
        .filter(|p| !p.is_empty())
        .unwrap_or(path);
    Some(match path {
        "/" => Endpoint::Root,
        "/metrics" => Endpoint::Metrics,
        "/v1/models" => Endpoint::V1Models,
        "/v2" => Endpoint::ServerMetadata,
        "/v2/health/live" => Endpoint::Live,
        "/v2/health/ready" => Endpoint::Ready,
        "/v2/models" => Endpoint::V2Models,
        _ => {
            if let Some(rest) = path.strip_prefix("/v1/models/") {
                return v1_model(rest);
            }
            if let Some(rest) = path.strip_prefix("/v2/models/") {
                return v2_model(rest);
            }
            return repository(path.strip_prefix("/v2/repository/models/")?);
        }
    })
}

fn name(segment: &str) -> Option<&str> {
    (!segment.is_empty() && !segment.contains('/')).then_some(segment)
}

fn v1_model(rest: &str) -> Option<Endpoint<'_>> {
    if let Some(model) = rest.strip_suffix(":predict") {
        return name(model).map(Endpoint::V1Predict);
    }
    if let Some(model) = rest.strip_suffix(":explain") {
        return name(model).map(Endpoint::V1Explain);
    }
    name(rest).map(Endpoint::V1Model)
}

fn v2_model(rest: &str) -> Option<Endpoint<'_>> {
    let (model, action) = match rest.rsplit_once('/') {
        Some((model, "ready")) => (model, "ready"),
        Some((model, "infer")) => (model, "infer"),
        _ => (rest, ""),
    };
    let model = match model.split_once('/') {
        None => Model {
            name: name(model)?,
            version: None,
        },
        Some((m, version)) => Model {
            name: name(m)?,
            version: Some(name(version.strip_prefix("versions/")?)?),
        },
    };
    Some(match action {
        "ready" => Endpoint::ModelReady(model),
        "infer" => Endpoint::Infer(model),
        _ => Endpoint::ModelMetadata(model),
    })
}

fn repository(rest: &str) -> Option<Endpoint<'_>> {
    let (model, action) = rest.rsplit_once('/')?;
    let model = name(model)?;
    match action {
        "load" => Some(Endpoint::Load(model)),
        "unload" => Some(Endpoint::Unload(model)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(path: &str) -> Result<Endpoint<'_>, Mismatch> {
        parse(&Method::GET, path)
    }

    fn post(path: &str) -> Result<Endpoint<'_>, Mismatch> {
        parse(&Method::POST, path)
    }

    fn model<'p>(name: &'p str, version: Option<&'p str>) -> Model<'p> {
        Model { name, version }
    }

    #[test]
    fn matches_every_route() {
        assert_eq!(get("/"), Ok(Endpoint::Root));
        assert_eq!(get("/metrics"), Ok(Endpoint::Metrics));
        assert_eq!(get("/v1/models"), Ok(Endpoint::V1Models));
        assert_eq!(get("/v1/models/m"), Ok(Endpoint::V1Model("m")));
        assert_eq!(post("/v1/models/m:predict"), Ok(Endpoint::V1Predict("m")));
        assert_eq!(post("/v1/models/m:explain"), Ok(Endpoint::V1Explain("m")));
        assert_eq!(get("/v2"), Ok(Endpoint::ServerMetadata));
        assert_eq!(get("/v2/health/live"), Ok(Endpoint::Live));
        assert_eq!(get("/v2/health/ready"), Ok(Endpoint::Ready));
        assert_eq!(get("/v2/models"), Ok(Endpoint::V2Models));
        assert_eq!(
            get("/v2/models/m"),
            Ok(Endpoint::ModelMetadata(model("m", None)))
        );
        assert_eq!(
            get("/v2/models/m/versions/3"),
            Ok(Endpoint::ModelMetadata(model("m", Some("3"))))
        );
        assert_eq!(
            get("/v2/models/m/ready"),
            Ok(Endpoint::ModelReady(model("m", None)))
        );
        assert_eq!(
            get("/v2/models/m/versions/3/ready"),
            Ok(Endpoint::ModelReady(model("m", Some("3"))))
        );
        assert_eq!(
            post("/v2/models/m/infer"),
            Ok(Endpoint::Infer(model("m", None)))
        );
        assert_eq!(
            post("/v2/models/m/versions/3/infer"),
            Ok(Endpoint::Infer(model("m", Some("3"))))
        );
        assert_eq!(
            post("/v2/repository/models/m/load"),
            Ok(Endpoint::Load("m"))
        );
        assert_eq!(
            post("/v2/repository/models/m/unload"),
            Ok(Endpoint::Unload("m"))
        );
        assert_eq!(get("/v2/health/live/"), Ok(Endpoint::Live));
        assert_eq!(
            parse(&Method::HEAD, "/v2/health/ready"),
            Ok(Endpoint::Ready)
        );
    }

    #[test]
    fn a_model_named_like_an_action_is_still_a_model() {
        assert_eq!(
            get("/v2/models/ready"),
            Ok(Endpoint::ModelMetadata(model("ready", None)))
        );
        assert_eq!(
            post("/v2/models/infer/infer"),
            Ok(Endpoint::Infer(model("infer", None)))
        );
    }

    #[test]
    fn unknown_paths_and_wrong_methods() {
        for path in [
            "/v3",
            "/v2/models//infer",
            "/v2/models/m/x/infer",
            "/v1/models/:predict",
            "/v2/repository/models/m/x",
            "/v1/models/a/b",
        ] {
            assert_eq!(post(path), Err(Mismatch::NotFound), "{path}");
        }
        assert_eq!(
            get("/v2/models/m/infer"),
            Err(Mismatch::MethodNotAllowed("POST"))
        );
        assert_eq!(
            post("/v2/health/live"),
            Err(Mismatch::MethodNotAllowed("GET"))
        );
        assert_eq!(
            get("/v1/models/m:predict"),
            Err(Mismatch::MethodNotAllowed("POST"))
        );
    }
}
