//! A webhook receiver for alert tests: a real HTTP server on 127.0.0.1
//! that records every JSON body POSTed to it.

use std::sync::{Arc, Mutex};

use anyhow::Result;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::Value;

/// The receiver; dropped with the test's runtime.
#[derive(Clone, Default)]
pub struct Webhook {
    received: Arc<Mutex<Vec<Value>>>,
}

impl Webhook {
    /// Starts a receiver; returns it and its URL.
    pub async fn start() -> Result<(Self, String)> {
        let hook = Self::default();
        let app = axum::Router::new()
            .route("/hook", axum::routing::post(receive))
            .with_state(hook.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/hook", listener.local_addr()?);
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok((hook, url))
    }

    /// Every body received so far, in order.
    pub fn received(&self) -> Vec<Value> {
        self.received
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

async fn receive(State(hook): State<Webhook>, body: axum::body::Bytes) -> StatusCode {
    let value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    hook.received
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(value);
    StatusCode::OK
}
