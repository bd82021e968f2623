//! synchdb
