//! The HTTP side: routing Kubernetes paths, injected faults, the verbs, and the request log.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::body::{Body, to_bytes};
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use serde_json::{Value, json};

use super::discovery;
use super::faults::{Faults, RequestLog, RequestRecord};
use super::meta::meta_str;
use super::patch::{self, PatchType};
use super::resources::{self, ResourceType};
use super::selector::{FieldSelector, Filter, LabelSelector};
use super::status::StatusError;
use super::store::{Part, Store, WatchFrom, WriteOptions};
use super::table::{self, IncludeObject};
use super::watch::{self, WatchRequest};

/// The largest request body accepted.
const MAX_BODY: usize = 16 << 20;

/// Everything the handlers share with the test controls.
#[derive(Debug)]
pub(crate) struct App {
    /// The objects.
    pub store: Store,
    /// Armed failures and delays.
    pub faults: Mutex<Faults>,
    /// Answered requests and write counts.
    pub log: Mutex<RequestLog>,
    /// The port served, for `/api`'s server address.
    pub port: u16,
}

impl App {
    /// The faults, also after a panic elsewhere.
    pub fn faults(&self) -> MutexGuard<'_, Faults> {
        self.faults.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The log, also after a panic elsewhere.
    pub fn log(&self) -> MutexGuard<'_, RequestLog> {
        self.log.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// What a path addresses.
#[derive(Debug)]
enum Route {
    /// `/healthz`, `/livez`, `/readyz`.
    Health,
    /// `/version`.
    Version,
    /// `/api`.
    CoreVersions,
    /// `/apis`.
    Groups,
    /// `/apis/{group}`.
    Group(Value),
    /// `/api/v1`, `/apis/{group}/{version}`.
    ResourceList(Value),
    /// A collection, an object or its status.
    Resource(Target),
}

/// The resource a request addresses.
#[derive(Debug)]
struct Target {
    rt: &'static ResourceType,
    namespace: Option<String>,
    name: Option<String>,
    part: Part,
}

/// The query parameters, in order.
struct Params(Vec<(String, String)>);

impl Params {
    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn flag(&self, key: &str) -> bool {
        matches!(self.get(key), Some("true" | "1"))
    }
}

/// The one handler: every request comes here.
pub(crate) async fn handle(State(app): State<Arc<App>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let method = parts.method.clone();
    let path = parts.uri.path().to_string();
    let query = parts.uri.query().unwrap_or_default().to_string();
    let target = if query.is_empty() {
        path.clone()
    } else {
        format!("{path}?{query}")
    };
    let route = route(&path);
    let mut record = RequestRecord {
        method: method.to_string(),
        path,
        query,
        status: 0,
        resource: None,
        subresource: None,
        injected: false,
    };
    if let Ok(Route::Resource(t)) = &route {
        record.resource = Some(t.rt.qualified());
        record.subresource = (t.part == Part::Status).then(|| "status".to_string());
    }

    let delay = app.faults().delay_for(method.as_str(), &target);
    if let Some(delay) = delay {
        tokio::time::sleep(delay).await;
    }
    let injected = app.faults().take_failure(method.as_str(), &target);
    let response = match injected {
        Some(error) => {
            record.injected = true;
            error_response(&error)
        }
        None => {
            let params = Query::<Vec<(String, String)>>::try_from_uri(&parts.uri)
                .map(|Query(p)| Params(p))
                .map_err(|e| StatusError::bad_request(format!("invalid query: {e}")));
            match (route, params) {
                (Ok(route), Ok(params)) => {
                    let body = to_bytes(body, MAX_BODY).await.map_err(|e| {
                        StatusError::new(
                            413,
                            "RequestEntityTooLarge",
                            format!("cannot read the body: {e}"),
                        )
                    });
                    match body {
                        Ok(body) => serve(&app, &method, &parts.headers, &params, route, &body),
                        Err(e) => error_response(&e),
                    }
                }
                (Err(e), _) | (_, Err(e)) => error_response(&e),
            }
        }
    };
    record.status = response.status().as_u16();
    app.log().record(record);
    response
}

/// Parses a path into a route.
fn route(path: &str) -> Result<Route, StatusError> {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let not_found = || StatusError::no_route(path);
    match segments.as_slice() {
        ["healthz" | "livez" | "readyz", ..] => Ok(Route::Health),
        ["version"] => Ok(Route::Version),
        ["api"] => Ok(Route::CoreVersions),
        ["api", version] => discovery::resource_list("", version)
            .map(Route::ResourceList)
            .ok_or_else(not_found),
        ["api", version, rest @ ..] => resource_route("", version, rest).ok_or_else(not_found),
        ["apis"] => Ok(Route::Groups),
        ["apis", group] => discovery::group(group)
            .map(Route::Group)
            .ok_or_else(not_found),
        ["apis", group, version] => discovery::resource_list(group, version)
            .map(Route::ResourceList)
            .ok_or_else(not_found),
        ["apis", group, version, rest @ ..] => {
            resource_route(group, version, rest).ok_or_else(not_found)
        }
        _ => Err(not_found()),
    }
}

/// `[namespaces/{ns}/]{plural}[/{name}[/status]]` in a group version.
fn resource_route(group: &str, version: &str, rest: &[&str]) -> Option<Route> {
    let (namespace, rest) = match rest {
        ["namespaces", ns, plural, ..] if !matches!(*plural, "status" | "finalize") => {
            (Some(ns.to_string()), &rest[2..])
        }
        _ => (None, rest),
    };
    let (plural, name, part) = match rest {
        [plural] => (*plural, None, Part::Main),
        [plural, name] => (*plural, Some(name.to_string()), Part::Main),
        [plural, name, "status"] => (*plural, Some(name.to_string()), Part::Status),
        _ => return None,
    };
    let rt = resources::by_path(group, version, plural)?;
    let scoped_right = match (&namespace, &name) {
        (Some(_), _) => rt.namespaced,
        (None, Some(_)) => !rt.namespaced,
        (None, None) => true,
    };
    if !scoped_right || (part == Part::Status && !rt.has_status) {
        return None;
    }
    Some(Route::Resource(Target {
        rt,
        namespace,
        name,
        part,
    }))
}

/// Answers a routed request.
fn serve(
    app: &App,
    method: &Method,
    headers: &HeaderMap,
    params: &Params,
    route: Route,
    body: &[u8],
) -> Response {
    let document = match route {
        Route::Health => {
            return Response::builder()
                .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
                .body(Body::from("ok"))
                .unwrap_or_default();
        }
        Route::Version => discovery::version(),
        Route::CoreVersions => discovery::core_versions(app.port),
        Route::Groups => discovery::groups(),
        Route::Group(document) | Route::ResourceList(document) => document,
        Route::Resource(target) => {
            return match resource(app, method, headers, params, target, body) {
                Ok(response) => response,
                Err(e) => error_response(&e),
            };
        }
    };
    if method == Method::GET {
        json_response(StatusCode::OK, &document)
    } else {
        error_response(&StatusError::method_not_allowed())
    }
}

/// The verbs on a resource.
fn resource(
    app: &App,
    method: &Method,
    headers: &HeaderMap,
    params: &Params,
    target: Target,
    body: &[u8],
) -> Result<Response, StatusError> {
    let Target {
        rt,
        namespace,
        name,
        part,
    } = target;
    let ns = namespace.as_deref();
    let opts = write_options(headers, params);
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json");
    if matches!(method.as_str(), "POST" | "PUT")
        && !(content_type.contains("json") || content_type.contains("yaml"))
    {
        // Protobuf and CBOR bodies: clients fall back to JSON after a 415.
        return Err(StatusError::unsupported_media_type(content_type));
    }
    match (method.as_str(), name) {
        ("GET", None) if params.flag("watch") => {
            let request = watch_request(params, namespace)?;
            Ok(watch::respond(&app.store, rt, request))
        }
        ("GET", None) => list(app, rt, headers, params, namespace),
        ("GET", Some(name)) => {
            let object = app
                .store
                .get(rt, ns, &name)
                .ok_or_else(|| StatusError::not_found(rt, &name))?;
            if wants_table(headers) {
                let include = IncludeObject::parse(params.get("includeObject"));
                return Ok(json_response(
                    StatusCode::OK,
                    &table::table(rt, &[object], None, include),
                ));
            }
            Ok(json_response(StatusCode::OK, &object))
        }
        ("POST", None) if part == Part::Main && (ns.is_some() || !rt.namespaced) => {
            let object = patch::parse_body(body, content_type.contains("yaml"))?;
            let created = app.store.create(rt, ns, object, &opts)?;
            Ok(json_response(StatusCode::CREATED, &created))
        }
        ("PUT", Some(name)) => {
            let object = patch::parse_body(body, content_type.contains("yaml"))?;
            let updated = app.store.update(rt, ns, &name, part, object, &opts)?;
            Ok(json_response(StatusCode::OK, &updated))
        }
        ("PATCH", Some(name)) => {
            let patch_type = PatchType::from_content_type(content_type)
                .ok_or_else(|| StatusError::unsupported_media_type(content_type))?;
            let mut opts = opts;
            if patch_type == PatchType::Apply {
                if params.get("fieldManager").is_none_or(str::is_empty) {
                    return Err(StatusError::new(
                        422,
                        "Invalid",
                        "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: \
                         is required for apply patch",
                    ));
                }
                opts.apply = true;
            }
            let patch = patch::parse_body(body, patch_type == PatchType::Apply)?;
            let existed = app.store.get(rt, ns, &name).is_some();
            let patched = app
                .store
                .patch(rt, ns, &name, part, patch_type, &patch, &opts)?;
            let code = if existed {
                StatusCode::OK
            } else {
                StatusCode::CREATED
            };
            Ok(json_response(code, &patched))
        }
        ("DELETE", Some(name)) if part == Part::Main => {
            let options = if body.iter().all(u8::is_ascii_whitespace) {
                Value::Null
            } else {
                patch::parse_body(body, false)?
            };
            let mut opts = opts;
            opts.dry_run |= options
                .get("dryRun")
                .and_then(Value::as_array)
                .is_some_and(|d| d.iter().any(|v| v == "All"));
            let precondition = (
                options
                    .pointer("/preconditions/resourceVersion")
                    .and_then(Value::as_str),
                options
                    .pointer("/preconditions/uid")
                    .and_then(Value::as_str),
            );
            let deleted = app.store.delete(rt, ns, &name, precondition, &opts)?;
            Ok(json_response(StatusCode::OK, &deleted))
        }
        _ => Err(StatusError::method_not_allowed()),
    }
}

/// `GET` on a collection: a list, or a table of it.
fn list(
    app: &App,
    rt: &'static ResourceType,
    headers: &HeaderMap,
    params: &Params,
    namespace: Option<String>,
) -> Result<Response, StatusError> {
    let filter = filter(params, namespace)?;
    let requested_rv = params
        .get("resourceVersion")
        .filter(|rv| !rv.is_empty())
        .map(parse_rv)
        .transpose()?;
    let compacted = app.store.compacted();
    if params.get("resourceVersionMatch") == Some("Exact")
        && let Some(rv) = requested_rv
        && rv < compacted
    {
        return Err(StatusError::expired(rv, compacted));
    }
    let (items, rv) = app.store.list(rt, &filter);
    let mut items: &[Value] = &items;
    // A continue token is `{rv}:{namespace}:{name}` of the last item sent.
    if let Some(token) = params.get("continue").filter(|t| !t.is_empty()) {
        let mut fields = token.splitn(3, ':');
        let (Some(token_rv), Some(ns), Some(name)) = (fields.next(), fields.next(), fields.next())
        else {
            return Err(StatusError::bad_request(format!(
                "invalid continue token {token:?}"
            )));
        };
        let token_rv = parse_rv(token_rv)?;
        if token_rv < compacted {
            return Err(StatusError::new(
                410,
                "Expired",
                "The provided continue parameter is too old to display a consistent list result. \
                 You can start a new list without the continue parameter.",
            ));
        }
        let start = items
            .iter()
            .position(|o| {
                (
                    meta_str(o, "namespace").unwrap_or(""),
                    meta_str(o, "name").unwrap_or(""),
                ) > (ns, name)
            })
            .unwrap_or(items.len());
        items = &items[start..];
    }
    let limit = params
        .get("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .filter(|l| *l > 0);
    let mut metadata = json!({ "resourceVersion": rv.to_string() });
    if let Some(limit) = limit
        && items.len() > limit
    {
        let last = &items[limit - 1];
        metadata["continue"] = json!(format!(
            "{rv}:{}:{}",
            meta_str(last, "namespace").unwrap_or(""),
            meta_str(last, "name").unwrap_or("")
        ));
        metadata["remainingItemCount"] = json!(items.len() - limit);
        items = &items[..limit];
    }
    if wants_table(headers) {
        let include = IncludeObject::parse(params.get("includeObject"));
        return Ok(json_response(
            StatusCode::OK,
            &table::table(rt, items, Some(rv), include),
        ));
    }
    let list = json!({
        "kind": rt.list_kind(),
        "apiVersion": rt.api_version(),
        "metadata": metadata,
        "items": items,
    });
    Ok(json_response(StatusCode::OK, &list))
}

fn filter(params: &Params, namespace: Option<String>) -> Result<Filter, StatusError> {
    Ok(Filter {
        namespace,
        labels: LabelSelector::parse(params.get("labelSelector").unwrap_or(""))?,
        fields: FieldSelector::parse(params.get("fieldSelector").unwrap_or(""))?,
    })
}

fn watch_request(params: &Params, namespace: Option<String>) -> Result<WatchRequest, StatusError> {
    let from = match params.get("resourceVersion") {
        None | Some("" | "0") => WatchFrom::Current,
        Some(rv) => WatchFrom::After(parse_rv(rv)?),
    };
    let timeout = params
        .get("timeoutSeconds")
        .map(|t| {
            t.parse::<u64>()
                .map_err(|_| StatusError::bad_request(format!("invalid timeoutSeconds {t:?}")))
        })
        .transpose()?
        .map(Duration::from_secs);
    Ok(WatchRequest {
        filter: filter(params, namespace)?,
        from,
        bookmarks: params.flag("allowWatchBookmarks"),
        send_initial_events: params.flag("sendInitialEvents"),
        timeout,
    })
}

fn parse_rv(rv: &str) -> Result<u64, StatusError> {
    rv.parse()
        .map_err(|_| StatusError::bad_request(format!("invalid resource version {rv:?}")))
}

fn write_options(headers: &HeaderMap, params: &Params) -> WriteOptions {
    let manager = params
        .get("fieldManager")
        .filter(|m| !m.is_empty())
        .map(str::to_string)
        .or_else(|| {
            // As the real server: the user agent up to its first `/`.
            let agent = headers.get(header::USER_AGENT)?.to_str().ok()?;
            let manager = agent.split('/').next().unwrap_or(agent).trim();
            (!manager.is_empty()).then(|| manager.to_string())
        })
        .or_else(|| Some("unknown".to_string()));
    WriteOptions {
        manager,
        apply: false,
        dry_run: params.get("dryRun") == Some("All"),
        test: false,
    }
}

/// Whether the client asked for a `Table` (kubectl's human output).
fn wants_table(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .next()
        .is_some_and(|first| first.contains("as=Table"))
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .unwrap_or_default()
}

/// A `Status` answer; `429` carries `Retry-After`.
pub(crate) fn error_response(error: &StatusError) -> Response {
    let status = StatusCode::from_u16(error.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = json_response(status, &error.to_json());
    if error.code == 429 {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    response
}
