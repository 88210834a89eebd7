//! The people's (and Prometheus') front door: HTTP on its own listener,
//! HTTPS by default with the collector's server certificate (no client
//! certificate), in the collector's ordered shutdown.
//!
//! | module     | responsibility                                                  |
//! |------------|-----------------------------------------------------------------|
//! | [`router`] | the routes and the state they share                             |
//! | [`probes`] | `/healthz` (process up), `/readyz` (database, migrations, CA)    |
//! | [`listen`] | the accept loop: TLS 1.3, connection cap, header timeout, drain |
//! | [`auth`]   | login, logout, the session behind each call, roles, CSRF        |
//! | [`api`]    | the JSON API (`/api/v1`)                                        |
//! | [`dashboard`] | the server-rendered dashboard (`/`, `/m/{ibge}`, `/failures`) |
//! | [`error`]  | the one JSON error shape                                        |
//!
//! `/metrics` (Prometheus text, [`crate::metrics`]) is served here, or on
//! `http.metrics_listen` alone when set.

pub mod api;
pub mod auth;
pub mod dashboard;
pub mod error;
pub mod listen;
pub mod probes;
pub mod router;
