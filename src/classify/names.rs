//! The enums of fixed names: statement kinds, audit categories and operations, rejections,
//! permissions.

/// Declares a fieldless enum whose every variant has one fixed spelling: the enum, `ALL`
/// (every variant, in declaration order), the method named after `fn` that gives a variant's
/// spelling (`$text`, or the variant's own name when none is given), and `Display`, which
/// prints that spelling.
macro_rules! named_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident $(=> $text:expr)?, )+
        }
        $(#[$all_meta:meta])*
        ALL;
        $(#[$fn_meta:meta])*
        fn $spelling:ident;
    ) => {
        $(#[$meta])*
        $vis enum $name {
            $( $(#[$vmeta])* $variant, )+
        }

        impl $name {
            $(#[$all_meta])*
            pub const ALL: [$name; <[$name]>::len(&[$($name::$variant),+])] =
                [$($name::$variant),+];

            $(#[$fn_meta])*
            pub fn $spelling(self) -> &'static str {
                match self {
                    $( $name::$variant => named_enum!(@text $variant $($text)?), )+
                }
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.$spelling())
            }
        }
    };
    (@text $variant:ident) => {
        stringify!($variant)
    };
    (@text $variant:ident $text:expr) => {
        $text
    };
}
