//! The secret forms each task has had injected, so that *every* later response to
//! that task is scrubbed too: an upstream may store an injected value (a comment
//! body, a saved query) and hand it back to a request that carried no placeholder.
//!
//! Each task's scrubber is built once, when a new form is remembered, and shared
//! by all its responses from then on.

use super::forms::SecretForm;
use super::scrub::Scrubber;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Forms remembered per task; the oldest go first beyond this.
pub const MAX_FORMS_PER_TASK: usize = 256;

#[derive(Default)]
struct TaskForms {
    forms: Vec<Arc<SecretForm>>,
    scrubber: Option<Arc<Scrubber>>,
}

/// Per-task secret forms and the scrubber built from them.
#[derive(Default)]
pub struct InjectedForms {
    by_task: Mutex<HashMap<String, TaskForms>>,
}

impl std::fmt::Debug for InjectedForms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let tasks = self.by_task.lock().map(|m| m.len()).unwrap_or(0);
        write!(f, "InjectedForms({tasks} tasks)")
    }
}

impl InjectedForms {
    /// Remembers `forms` for `task` and returns the task's scrubber, rebuilt only
    /// if one of them is new.
    pub fn remember(&self, task: &str, forms: Vec<SecretForm>) -> Option<Arc<Scrubber>> {
        let mut map = self.by_task.lock().unwrap_or_else(|p| p.into_inner());
        let entry = map.entry(task.to_string()).or_default();
        let mut added = false;
        for form in forms {
            if !entry.forms.iter().any(|known| **known == form) {
                entry.forms.push(Arc::new(form));
                added = true;
            }
        }
        if added {
            let excess = entry.forms.len().saturating_sub(MAX_FORMS_PER_TASK);
            entry.forms.drain(..excess);
            entry.scrubber = Scrubber::from_shared(entry.forms.clone()).map(Arc::new);
        }
        entry.scrubber.clone()
    }

    /// The scrubber of everything remembered for `task`, if anything is.
    pub fn scrubber(&self, task: &str) -> Option<Arc<Scrubber>> {
        let map = self.by_task.lock().unwrap_or_else(|p| p.into_inner());
        map.get(task).and_then(|t| t.scrubber.clone())
    }

    /// Forgets an ended task.
    pub fn forget(&self, task: &str) {
        self.by_task
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(task);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inject::forms::value_forms;

    #[test]
    fn a_task_scrubber_is_rebuilt_only_for_new_forms_and_forgotten_with_the_task() {
        let forms = InjectedForms::default();
        assert!(forms.scrubber("t1").is_none());
        let first = forms
            .remember("t1", value_forms("__A__", "aaaa-value-0123456789"))
            .unwrap();
        let again = forms
            .remember("t1", value_forms("__A__", "aaaa-value-0123456789"))
            .unwrap();
        assert!(Arc::ptr_eq(&first, &again));
        let grown = forms
            .remember("t1", value_forms("__B__", "bbbb-value-0123456789"))
            .unwrap();
        assert!(!Arc::ptr_eq(&first, &grown));
        assert_eq!(
            grown.scrub(b"aaaa-value-0123456789 bbbb-value-0123456789"),
            b"__A__ __B__"
        );
        assert!(forms.scrubber("t2").is_none());
        // SECURITY: the proxy state is Debug; no secret may show through it.
        let shown = format!("{forms:?} {grown:?}");
        assert!(!shown.contains("value-0123"), "{shown}");
        forms.forget("t1");
        assert!(forms.scrubber("t1").is_none());
        assert_eq!(format!("{forms:?}"), "InjectedForms(0 tasks)");
    }
}
