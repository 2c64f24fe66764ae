//! Introspection (the sheet helper owns this file).
