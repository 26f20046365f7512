//! How an upload cut off by the `bytes_up` budget tells the code that sent it
//! why (a leaf, shared by the exchange's counted body and the upstream client).

use std::sync::Arc;

/// Why an upload was cut off by the `bytes_up` budget: shared by the body and
/// the code that sends it, since HTTP/2 does not carry a body's error back to
/// the sender.
#[derive(Debug, Clone, Default)]
pub struct BudgetCut(Arc<std::sync::OnceLock<String>>);

impl BudgetCut {
    /// Records why the upload was cut (the first reason stays).
    pub fn set(&self, why: String) {
        let _ = self.0.set(why);
    }

    /// Why the upload was cut, if it was.
    pub fn reason(&self) -> Option<&str> {
        self.0.get().map(String::as_str)
    }
}

/// The budget error of a body cut off by it.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CutOff(pub String);
