//! The secret forms each task has had injected, so that *every* later response to
//! that task is scrubbed too: an upstream may store an injected value (a comment
//! body, a saved query) and hand it back to a request that carried no placeholder.

use std::collections::HashMap;
use std::sync::Mutex;

/// Forms remembered per task; the oldest go first beyond this.
pub const MAX_FORMS_PER_TASK: usize = 256;

type Pair = (Vec<u8>, Vec<u8>);

/// Per-task `(injected form, placeholder form)` pairs.
#[derive(Debug, Default)]
pub struct InjectedForms {
    by_task: Mutex<HashMap<String, Vec<Pair>>>,
}

impl InjectedForms {
    /// Remembers `pairs` for `task`.
    pub fn remember(&self, task: &str, pairs: &[Pair]) {
        let mut map = self.by_task.lock().unwrap_or_else(|p| p.into_inner());
        let forms = map.entry(task.to_string()).or_default();
        for pair in pairs {
            if !forms.contains(pair) {
                forms.push(pair.clone());
            }
        }
        let excess = forms.len().saturating_sub(MAX_FORMS_PER_TASK);
        forms.drain(..excess);
    }

    /// Everything remembered for `task`.
    pub fn forms(&self, task: &str) -> Vec<Pair> {
        let map = self.by_task.lock().unwrap_or_else(|p| p.into_inner());
        map.get(task).cloned().unwrap_or_default()
    }

    /// Forgets an ended task.
    pub fn forget(&self, task: &str) {
        self.by_task
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(task);
    }
}
