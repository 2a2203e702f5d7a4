//! Shared resources: what a program registers once ([`crate::Registry::provide`]: a database
//! pool, an HTTP client, its service handles) and every step reaches from its context, typed
//! ([`crate::StepContext::resource`]), as axum hands a handler its `State`. Steps then need no
//! clones captured per closure, and can be plain `async fn`s.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::Arc;

/// The resources a registry holds, one per type. Cheap to clone (one `Arc`).
#[derive(Clone, Default)]
pub struct Resources {
    by_type: Arc<HashMap<TypeId, Provided>>,
}

#[derive(Clone)]
struct Provided {
    name: &'static str,
    value: Arc<dyn Any + Send + Sync>,
}

impl Resources {
    /// Holds `value` as the resource of its type, replacing one provided before.
    pub(crate) fn insert<T: Send + Sync + 'static>(&mut self, value: T) {
        let provided = Provided {
            name: std::any::type_name::<T>(),
            value: Arc::new(value),
        };
        Arc::make_mut(&mut self.by_type).insert(TypeId::of::<T>(), provided);
    }

    /// The resource of type `T`, if one was provided.
    pub fn get<T: Send + Sync + 'static>(&self) -> Option<Arc<T>> {
        let provided = self.by_type.get(&TypeId::of::<T>())?;
        provided.value.clone().downcast::<T>().ok()
    }

    /// The type names of the resources held, sorted.
    pub fn names(&self) -> Vec<&'static str> {
        let mut names: Vec<_> = self.by_type.values().map(|p| p.name).collect();
        names.sort_unstable();
        names
    }
}

impl std::fmt::Debug for Resources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.names()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq)]
    struct Pool(u32);

    #[test]
    fn one_resource_per_type_reached_by_its_type() {
        let mut resources = Resources::default();
        assert!(resources.get::<Pool>().is_none());
        resources.insert(Pool(1));
        resources.insert(String::from("client"));
        resources.insert(Pool(2));
        assert_eq!(resources.get::<Pool>().as_deref(), Some(&Pool(2)));
        assert_eq!(
            resources.get::<String>().as_deref().map(String::as_str),
            Some("client")
        );
        assert!(resources.get::<u8>().is_none());
        assert_eq!(resources.names().len(), 2);
    }
}
