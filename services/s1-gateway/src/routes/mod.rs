//! The canonical `/v1` API, one module per area.

pub mod accounts;
pub mod catalog;
pub mod status;

use serde::Deserialize;
use utoipa::IntoParams;

/// `{id}`: a user id.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct UserPath {
    /// User id.
    #[param(minimum = 1)]
    pub id: i64,
}

/// `{id}`: a title id.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct TitlePath {
    /// Title id.
    #[param(minimum = 1)]
    pub id: i64,
}
