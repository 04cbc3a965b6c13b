//! [`Client`]: one gateway's API, call by call, with the options of each call.

use crate::error::{Error, Result};
use crate::sse::EventStream;
use crate::types::*;
use bytes::Bytes;
use reqwest::header::CONTENT_TYPE;
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::time::Duration;

/// `acks` of a produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Acks {
    /// Answer once accepted.
    None,
    /// After the leader's append (the default).
    #[default]
    Leader,
    /// After every in-sync replica has it.
    All,
}

impl Acks {
    pub fn as_str(self) -> &'static str {
        match self {
            Acks::None => "0",
            Acks::Leader => "1",
            Acks::All => "all",
        }
    }
}

/// Options of a produce.
#[derive(Debug, Clone, Default)]
pub struct ProduceOptions {
    pub acks: Acks,
    pub timeout_ms: Option<u64>,
    /// `Idempotency-Key`: a retry with the same key and request is answered with the
    /// original offsets and writes nothing.
    pub idempotency_key: Option<String>,
    /// Conditional append (partition route): only if the log ends exactly here.
    pub expected_offset: Option<u64>,
    /// A producer session's headers (partition route).
    pub session: Option<SessionHeaders>,
}

/// `Producer-Id`, `Producer-Epoch` and the sequence of a request's first record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionHeaders {
    pub producer_id: u64,
    pub producer_epoch: u32,
    pub sequence: u32,
}

/// Where a read starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Start {
    #[default]
    Earliest,
    Latest,
    Offset(u64),
    /// The first record at or after this time (ms).
    Timestamp(i64),
}

/// How keys and values come back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    #[default]
    Json,
    Text,
    Base64,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Text => "text",
            Format::Base64 => "base64",
        }
    }
}

/// Options of a partition read or a member poll.
#[derive(Debug, Clone, Default)]
pub struct ReadOptions {
    /// Long poll: wait up to this long for a record when none is there.
    pub timeout_ms: Option<u64>,
    pub max_records: Option<u32>,
    pub max_bytes: Option<u64>,
    pub format: Format,
}

impl ReadOptions {
    fn query(&self) -> Vec<(&'static str, String)> {
        let mut q = vec![("format", self.format.as_str().to_owned())];
        if let Some(t) = self.timeout_ms {
            q.push(("timeout_ms", t.to_string()));
        }
        if let Some(n) = self.max_records {
            q.push(("max_records", n.to_string()));
        }
        if let Some(n) = self.max_bytes {
            q.push(("max_bytes", n.to_string()));
        }
        q
    }
}

/// A binary consume answer ([`Client::consume_binary`]).
#[derive(Debug, Clone)]
pub struct BinaryConsumeReply {
    pub records: Vec<crate::binary::BinaryRecord>,
    pub next_offset: u64,
    pub high_watermark: u64,
}

/// A client of one Fjord gateway (or load balancer).
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
}

/// Path segments are names from `[a-zA-Z0-9._-]` or member ids; anything else is
/// percent-encoded so a bad name reaches the server (and its clear 400) intact.
fn segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl Client {
    /// A client of the API at `base` (`http://host:port`), with no overall request
    /// timeout (long polls set their own) and a 10 s connect timeout.
    pub fn new(base: &str) -> Result<Self> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| Error::Transport(e.to_string()))?;
        Ok(Self::with_http(http, base))
    }

    /// [`new`](Self::new), sending `token` as `Authorization: Bearer` on every call
    /// (the header is marked sensitive, so it is never logged by the HTTP stack).
    pub fn with_token(base: &str, token: &str) -> Result<Self> {
        Self::connect(base, Some(token), None)
    }

    /// A client of `base` sending `token` (if any) and trusting the PEM CA certificates
    /// `ca_pem` (if any) besides none other, for an `https://` gateway with its own CA.
    pub fn connect(base: &str, token: Option<&str>, ca_pem: Option<&[u8]>) -> Result<Self> {
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(token) = token {
            let mut value = reqwest::header::HeaderValue::try_from(format!("Bearer {}", token.trim()))
                .map_err(|_| Error::Transport("the token has characters a header cannot carry".into()))?;
            value.set_sensitive(true);
            headers.insert(reqwest::header::AUTHORIZATION, value);
        }
        let mut builder = reqwest::Client::builder().connect_timeout(Duration::from_secs(10)).default_headers(headers);
        if let Some(pem) = ca_pem {
            for cert in
                reqwest::Certificate::from_pem_bundle(pem).map_err(|e| Error::Transport(format!("CA file: {e}")))?
            {
                builder = builder.add_root_certificate(cert);
            }
        }
        let http = builder.build().map_err(|e| Error::Transport(e.to_string()))?;
        Ok(Self::with_http(http, base))
    }

    pub fn with_http(http: reqwest::Client, base: &str) -> Self {
        Self { http, base: base.trim_end_matches('/').to_owned() }
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// The underlying HTTP client, for raw requests (the benchmark's hot loop).
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// The absolute URL of an API path (`/v1/...`).
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.http.request(method, self.url(path))
    }

    async fn send(builder: reqwest::RequestBuilder) -> Result<reqwest::Response> {
        let resp = builder.send().await.map_err(|e| Error::Transport(e.to_string()))?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        Err(Self::api_error(resp).await)
    }

    /// The [`Error::Api`] of an error answer.
    pub async fn api_error(resp: reqwest::Response) -> Error {
        let status = resp.status().as_u16();
        let body = match resp.bytes().await {
            Ok(b) => b,
            Err(e) => return Error::Transport(e.to_string()),
        };
        #[derive(serde::Deserialize)]
        struct Wrapper {
            error: ErrorDetail,
        }
        match serde_json::from_slice::<Wrapper>(&body) {
            Ok(w) => Error::Api {
                status,
                code: w.error.code,
                message: w.error.message,
                retriable: w.error.retriable,
                details: w.error.details,
            },
            Err(_) => Error::Api {
                status,
                code: "unknown".into(),
                message: String::from_utf8_lossy(&body).into_owned(),
                retriable: status >= 500,
                details: None,
            },
        }
    }

    async fn json<T: DeserializeOwned>(builder: reqwest::RequestBuilder) -> Result<T> {
        let resp = Self::send(builder).await?;
        let bytes = resp.bytes().await.map_err(|e| Error::Transport(e.to_string()))?;
        serde_json::from_slice(&bytes).map_err(|e| Error::Decode(format!("{e}: {}", String::from_utf8_lossy(&bytes))))
    }

    async fn empty(builder: reqwest::RequestBuilder) -> Result<()> {
        Self::send(builder).await.map(drop)
    }

    // ----- topics --------------------------------------------------------------------

    pub async fn list_topics(&self) -> Result<Vec<TopicSummary>> {
        Ok(Self::json::<TopicList>(self.request(Method::GET, "/v1/topics")).await?.topics)
    }

    pub async fn create_topic(&self, spec: &NewTopic) -> Result<TopicDescription> {
        Self::json(self.request(Method::POST, "/v1/topics").json(spec)).await
    }

    /// Creates `spec` unless a topic of that name exists; either way answers with the
    /// topic as it is.
    pub async fn ensure_topic(&self, spec: &NewTopic) -> Result<TopicDescription> {
        match self.create_topic(spec).await {
            Err(e) if e.code() == Some("topic_already_exists") => self.describe_topic(&spec.name).await,
            other => other,
        }
    }

    pub async fn describe_topic(&self, name: &str) -> Result<TopicDescription> {
        Self::json(self.request(Method::GET, &format!("/v1/topics/{}", segment(name)))).await
    }

    pub async fn alter_topic(&self, name: &str, change: &TopicChange) -> Result<TopicDescription> {
        Self::json(self.request(Method::PATCH, &format!("/v1/topics/{}", segment(name))).json(change)).await
    }

    pub async fn delete_topic(&self, name: &str) -> Result<()> {
        Self::empty(self.request(Method::DELETE, &format!("/v1/topics/{}", segment(name)))).await
    }

    // ----- records -------------------------------------------------------------------

    fn produce_path(topic: &str, partition: Option<u32>) -> String {
        match partition {
            Some(p) => format!("/v1/topics/{}/partitions/{p}/records", segment(topic)),
            None => format!("/v1/topics/{}/records", segment(topic)),
        }
    }

    fn produce_query(opts: &ProduceOptions) -> Vec<(&'static str, String)> {
        let mut q = vec![("acks", opts.acks.as_str().to_owned())];
        if let Some(t) = opts.timeout_ms {
            q.push(("timeout_ms", t.to_string()));
        }
        if let Some(o) = opts.expected_offset {
            q.push(("expected_offset", o.to_string()));
        }
        q
    }

    /// A produce request with the options' query and headers.
    fn produce_request(&self, topic: &str, partition: Option<u32>, opts: &ProduceOptions) -> reqwest::RequestBuilder {
        let mut req =
            self.request(Method::POST, &Self::produce_path(topic, partition)).query(&Self::produce_query(opts));
        if let Some(key) = &opts.idempotency_key {
            req = req.header("Idempotency-Key", key);
        }
        if let Some(s) = opts.session {
            req = req
                .header("Producer-Id", s.producer_id)
                .header("Producer-Epoch", s.producer_epoch)
                .header("Producer-Sequence", s.sequence);
        }
        req
    }

    /// A produce answer, with its `Idempotent-Replayed` header.
    async fn produce_reply(req: reqwest::RequestBuilder) -> Result<ProduceReply> {
        let resp = Self::send(req).await?;
        let replayed = resp.headers().get("idempotent-replayed").and_then(|v| v.to_str().ok()).map(str::to_owned);
        let bytes = resp.bytes().await.map_err(|e| Error::Transport(e.to_string()))?;
        let mut reply: ProduceReply = serde_json::from_slice(&bytes)
            .map_err(|e| Error::Decode(format!("{e}: {}", String::from_utf8_lossy(&bytes))))?;
        reply.replayed = replayed;
        Ok(reply)
    }

    /// Registers a producer session under `name` (a new id, or the next epoch of a
    /// known name, fencing the older instance).
    pub async fn register_producer(&self, name: &str) -> Result<ProducerSession> {
        Self::json(self.request(Method::POST, "/v1/producers").json(&serde_json::json!({ "name": name }))).await
    }

    /// Produces JSON records to a topic (`partition: None`: by key, or round robin) or
    /// to one partition. Some partitions failing is still `Ok`: see each record's `error`.
    pub async fn produce(
        &self,
        topic: &str,
        partition: Option<u32>,
        records: &[Record],
        opts: &ProduceOptions,
    ) -> Result<ProduceReply> {
        let body = serde_json::json!({ "records": records });
        Self::produce_reply(self.produce_request(topic, partition, opts).json(&body)).await
    }

    /// Produces a body as it is, with its media type (NDJSON, raw bytes, the binary
    /// record format) and extra query parameters (`key`, `partition`, `timestamp`).
    pub async fn produce_body(
        &self,
        topic: &str,
        partition: Option<u32>,
        content_type: &str,
        body: Bytes,
        opts: &ProduceOptions,
        extra: &[(&str, String)],
    ) -> Result<ProduceReply> {
        let req =
            self.produce_request(topic, partition, opts).query(extra).header(CONTENT_TYPE, content_type).body(body);
        Self::produce_reply(req).await
    }

    fn start_query(start: Start) -> (&'static str, String) {
        match start {
            Start::Earliest => ("offset", "earliest".into()),
            Start::Latest => ("offset", "latest".into()),
            Start::Offset(o) => ("offset", o.to_string()),
            Start::Timestamp(t) => ("timestamp", t.to_string()),
        }
    }

    /// Reads a partition from `start`, long-polling up to `timeout_ms`.
    pub async fn consume(&self, topic: &str, partition: u32, start: Start, opts: &ReadOptions) -> Result<ConsumeReply> {
        let path = format!("/v1/topics/{}/partitions/{partition}/records", segment(topic));
        let req = self.request(Method::GET, &path).query(&[Self::start_query(start)]).query(&opts.query());
        Self::json(req).await
    }

    /// [`consume`](Self::consume) in the binary layout (`Accept:
    /// application/vnd.fjord.records`): no JSON or base64 on either side; `opts.format`
    /// does not apply.
    pub async fn consume_binary(
        &self,
        topic: &str,
        partition: u32,
        start: Start,
        opts: &ReadOptions,
    ) -> Result<BinaryConsumeReply> {
        let path = format!("/v1/topics/{}/partitions/{partition}/records", segment(topic));
        let req = self
            .request(Method::GET, &path)
            .query(&[Self::start_query(start)])
            .query(&opts.query())
            .header("accept", crate::binary::BINARY_RECORDS);
        let resp = Self::send(req).await?;
        let number = |name: &str| -> Result<u64> {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| Error::Decode(format!("a binary consume answer without a numeric `{name}` header")))
        };
        let (next_offset, high_watermark) = (number("next-offset")?, number("high-watermark")?);
        let body = resp.bytes().await.map_err(|e| Error::Transport(e.to_string()))?;
        let records = crate::binary::read_consumed(&body).map_err(Error::Decode)?;
        Ok(BinaryConsumeReply { records, next_offset, high_watermark })
    }

    /// Every committed record of a partition from `from` up to the high watermark at
    /// the time of the first read.
    pub async fn read_to_end(&self, topic: &str, partition: u32, from: Start) -> Result<Vec<ConsumedRecord>> {
        let mut out = Vec::new();
        let mut reply = self.consume(topic, partition, from, &ReadOptions::default()).await?;
        let end = reply.high_watermark;
        loop {
            let next = reply.next_offset;
            out.extend(reply.records.into_iter().filter(|r| r.offset < end));
            if next >= end {
                return Ok(out);
            }
            reply = self.consume(topic, partition, Start::Offset(next), &ReadOptions::default()).await?;
        }
    }

    /// A partition's records as Server-Sent Events from `start` (or, with
    /// `last_event_id`, right after that event).
    pub async fn stream(
        &self,
        topic: &str,
        partition: u32,
        start: Start,
        last_event_id: Option<&str>,
        heartbeat_ms: Option<u64>,
    ) -> Result<EventStream> {
        let path = format!("/v1/topics/{}/partitions/{partition}/records", segment(topic));
        let mut req =
            self.request(Method::GET, &path).query(&[Self::start_query(start)]).header("accept", "text/event-stream");
        if let Some(id) = last_event_id {
            req = req.header("last-event-id", id);
        }
        if let Some(ms) = heartbeat_ms {
            req = req.query(&[("heartbeat_ms", ms)]);
        }
        Ok(EventStream::new(Self::send(req).await?))
    }

    /// A partition's offsets, and with `timestamp` the first offset at or after it.
    pub async fn offsets(&self, topic: &str, partition: u32, timestamp: Option<i64>) -> Result<PartitionOffsets> {
        let path = format!("/v1/topics/{}/partitions/{partition}/offsets", segment(topic));
        let mut req = self.request(Method::GET, &path);
        if let Some(t) = timestamp {
            req = req.query(&[("timestamp", t)]);
        }
        Self::json(req).await
    }

    // ----- groups --------------------------------------------------------------------

    pub async fn join(&self, group: &str, join: &Join) -> Result<Membership> {
        Self::json(self.request(Method::POST, &format!("/v1/groups/{}/members", segment(group))).json(join)).await
    }

    pub async fn poll(&self, group: &str, member_id: &str, opts: &ReadOptions) -> Result<PollReply> {
        let path = format!("/v1/groups/{}/members/{}/records", segment(group), segment(member_id));
        Self::json(self.request(Method::GET, &path).query(&opts.query())).await
    }

    /// A member's polls as Server-Sent Events (`assignment` and `record` events).
    pub async fn poll_stream(&self, group: &str, member_id: &str, opts: &ReadOptions) -> Result<EventStream> {
        let path = format!("/v1/groups/{}/members/{}/records", segment(group), segment(member_id));
        let req = self.request(Method::GET, &path).query(&opts.query()).header("accept", "text/event-stream");
        Ok(EventStream::new(Self::send(req).await?))
    }

    pub async fn leave(&self, group: &str, member_id: &str) -> Result<()> {
        let path = format!("/v1/groups/{}/members/{}", segment(group), segment(member_id));
        Self::empty(self.request(Method::DELETE, &path)).await
    }

    pub async fn commit(&self, group: &str, commit: &Commit) -> Result<()> {
        Self::empty(self.request(Method::POST, &format!("/v1/groups/{}/offsets", segment(group))).json(commit)).await
    }

    pub async fn group_offsets(&self, group: &str) -> Result<GroupOffsets> {
        Self::json(self.request(Method::GET, &format!("/v1/groups/{}/offsets", segment(group)))).await
    }

    pub async fn seek(&self, group: &str, seek: &Seek) -> Result<SeekReply> {
        Self::json(self.request(Method::POST, &format!("/v1/groups/{}/seek", segment(group))).json(seek)).await
    }

    pub async fn list_groups(&self) -> Result<Vec<GroupSummary>> {
        Ok(Self::json::<GroupList>(self.request(Method::GET, "/v1/groups")).await?.groups)
    }

    pub async fn describe_group(&self, group: &str) -> Result<GroupDescription> {
        Self::json(self.request(Method::GET, &format!("/v1/groups/{}", segment(group)))).await
    }

    pub async fn delete_group(&self, group: &str) -> Result<()> {
        Self::empty(self.request(Method::DELETE, &format!("/v1/groups/{}", segment(group)))).await
    }

    // ----- cluster -------------------------------------------------------------------

    // ----- security ------------------------------------------------------------------

    pub async fn whoami(&self) -> Result<WhoAmI> {
        Self::json(self.request(Method::GET, "/v1/whoami")).await
    }

    pub async fn create_token(&self, spec: &NewToken) -> Result<CreatedToken> {
        Self::json(self.request(Method::POST, "/v1/tokens").json(spec)).await
    }

    pub async fn list_tokens(&self) -> Result<Vec<TokenInfo>> {
        Ok(Self::json::<TokenList>(self.request(Method::GET, "/v1/tokens")).await?.tokens)
    }

    pub async fn revoke_token(&self, id: &str) -> Result<()> {
        Self::empty(self.request(Method::DELETE, &format!("/v1/tokens/{}", segment(id)))).await
    }

    /// ACL bindings, filtered by the given `(field, value)` pairs (`principal`,
    /// `resource_type`, `pattern_type`, `name`).
    pub async fn list_acls(&self, filter: &[(&str, &str)]) -> Result<Vec<AclBinding>> {
        Ok(Self::json::<AclList>(self.request(Method::GET, "/v1/acls").query(filter)).await?.acls)
    }

    pub async fn create_acls(&self, acls: &[AclBinding]) -> Result<Vec<AclBinding>> {
        let body = serde_json::json!({ "acls": acls });
        Ok(Self::json::<AclList>(self.request(Method::POST, "/v1/acls").json(&body)).await?.acls)
    }

    pub async fn delete_acl(&self, acl: &AclBinding) -> Result<()> {
        Self::empty(self.request(Method::DELETE, "/v1/acls").query(acl)).await
    }

    // ----- pipelines -----------------------------------------------------------------

    /// Stores a pipeline definition (see `fjord-streams`' `PipelineDef`).
    pub async fn create_pipeline(&self, definition: &Value) -> Result<PipelineInfo> {
        Self::json(self.request(Method::POST, "/v1/pipelines").json(definition)).await
    }

    pub async fn list_pipelines(&self) -> Result<Vec<PipelineInfo>> {
        Ok(Self::json::<PipelineList>(self.request(Method::GET, "/v1/pipelines")).await?.pipelines)
    }

    /// A pipeline with its status: instances, and per input partition offsets, lag and
    /// its task's tallies.
    pub async fn describe_pipeline(&self, name: &str) -> Result<Value> {
        Self::json(self.request(Method::GET, &format!("/v1/pipelines/{}", segment(name)))).await
    }

    pub async fn delete_pipeline(&self, name: &str) -> Result<()> {
        Self::empty(self.request(Method::DELETE, &format!("/v1/pipelines/{}", segment(name)))).await
    }

    pub async fn cluster(&self) -> Result<Cluster> {
        Self::json(self.request(Method::GET, "/v1/cluster")).await
    }

    /// Hands the leadership of `partitions` (all of them when `None`) back to their
    /// preferred replicas, waiting up to `timeout_ms` (the gateway's default when `None`)
    /// for the controller to do it.
    pub async fn elect_preferred_leaders(
        &self,
        partitions: Option<&[PartitionRef]>,
        timeout_ms: Option<u64>,
    ) -> Result<ElectionResults> {
        let mut body = serde_json::json!({"type": "preferred"});
        if let Some(p) = partitions {
            body["partitions"] = serde_json::to_value(p).map_err(|e| Error::Decode(e.to_string()))?;
        }
        if let Some(ms) = timeout_ms {
            body["timeout_ms"] = ms.into();
        }
        Self::json(self.request(Method::POST, "/v1/elections").json(&body)).await
    }

    /// Whether the gateway is ready to serve (`/readyz` answers 200).
    pub async fn ready(&self) -> bool {
        matches!(self.request(Method::GET, "/readyz").send().await, Ok(r) if r.status() == StatusCode::OK)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_segments_are_encoded_and_names_left_alone() {
        assert_eq!(segment("orders.v1_x-y"), "orders.v1_x-y");
        assert_eq!(segment("a b/c"), "a%20b%2Fc");
        assert_eq!(segment("ü"), "%C3%BC");
    }

    #[test]
    fn errors_keep_code_status_and_retriable() {
        let e =
            Error::Api { status: 503, code: "not_leader".into(), message: "m".into(), retriable: true, details: None };
        assert_eq!((e.code(), e.status(), e.retriable()), (Some("not_leader"), Some(503), true));
        assert!(Error::Transport("x".into()).retriable());
        assert!(!Error::Decode("x".into()).retriable());
    }
}
