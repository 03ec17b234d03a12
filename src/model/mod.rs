//! Plain data types. Their serde names are the seeds' JSON names.

pub mod alert;
pub mod audit;
pub mod entitlement;
pub mod invitation;
pub mod membership;
pub mod org;
pub mod page;
pub mod period;
pub mod permission;
pub mod plan;
pub mod project;
pub mod reservation;
pub mod resource;
pub mod role;
pub mod time;
pub mod transfer;
pub mod usage;
pub mod user;
