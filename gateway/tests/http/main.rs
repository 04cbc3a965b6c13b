//! HTTP handler tests of the gateway, in one test binary by area: the whole router over
//! a real storage node and the embedded metadata store with its controller, driven with
//! `oneshot` (no socket); see [`common`].
//!
//! Every rejected request is checked for its status, its stable error `code`, and for
//! having changed nothing: no high watermark moved, no topic appeared (a rejected produce
//! must not auto-create its topic), a group's description is the same afterwards.

mod auth;
mod cleanup;
mod common;
mod consume;
mod elections;
mod exactly_once;
mod groups;
mod metrics;
mod partial;
mod pipelines;
mod produce;
mod routes;
mod sse;
mod topics;
