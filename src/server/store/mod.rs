//! The database side of the routes that move report data: route files call these functions
//! instead of holding SQL themselves.

pub mod chunks;
pub mod emergency;
pub mod reports;
pub mod stations;
