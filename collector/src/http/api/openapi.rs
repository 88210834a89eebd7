//! `GET /api/v1/openapi.yaml`: the API's description (public, like any
//! API document; it holds no data).

use axum::http::header;
use axum::response::IntoResponse;

/// The OpenAPI 3.1 document, kept beside the handlers it describes.
pub const DOCUMENT: &str = include_str!("openapi.yaml");

pub async fn document() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/yaml; charset=utf-8")],
        DOCUMENT,
    )
}
