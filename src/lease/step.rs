//! A protocol step: a fault point for the crash and race tests, and in unit tests the place
//! where the property test lets a third party act (rename things) as a step is reached.

use crate::fault;

/// Reach the step `name`.
pub(super) fn step(name: &str) {
    fault::point(name);
    #[cfg(test)]
    third_party::at(name);
}

/// What a third party does when the protocol reaches a step (once), for the property test.
#[cfg(test)]
pub(super) mod third_party {
    use std::cell::RefCell;

    type Act = (String, Box<dyn FnMut()>);

    thread_local! {
        static ARMED: RefCell<Option<Act>> = const { RefCell::new(None) };
    }

    /// Do `act` when the protocol next reaches step `at` (replacing what was armed).
    pub(in crate::lease) fn arm(at: &str, act: Box<dyn FnMut()>) {
        ARMED.with(|t| *t.borrow_mut() = Some((at.to_owned(), act)));
    }

    /// Forget what was armed and did not happen.
    pub(in crate::lease) fn disarm() {
        ARMED.with(|t| t.borrow_mut().take());
    }

    pub(super) fn at(step: &str) {
        let armed = ARMED.with(|t| {
            let mut t = t.borrow_mut();
            if t.as_ref().is_some_and(|(s, _)| s == step) {
                t.take()
            } else {
                None
            }
        });
        if let Some((_, mut act)) = armed {
            act();
        }
    }
}
