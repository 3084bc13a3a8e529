//! [`db_enum!`]: status-like enums with the names they are stored under.

/// Declares a status-like enum with its database names: `as_db`, `from_db` and `ALL`.
///
/// ```
/// crm_platform::db_enum!(
///     /// Where a task is.
///     Status { Open = "open", Done = "done" }
/// );
/// assert_eq!(Status::from_db("done"), Some(Status::Done));
/// assert_eq!(Status::Open.as_db(), "open");
/// ```
#[macro_export]
macro_rules! db_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $db:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name { $($(#[$vmeta])* $variant),+ }

        impl $name {
            /// Every value.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The name stored in the database.
            pub fn as_db(self) -> &'static str {
                match self { $($name::$variant => $db),+ }
            }

            /// The value of a stored name.
            pub fn from_db(name: &str) -> Option<Self> {
                match name { $($db => Some($name::$variant),)+ _ => None }
            }
        }
    };
}
