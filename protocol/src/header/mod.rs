//! Typed custom headers.
use crate::command::ExtFields;
use crate::error::Result;

pub trait CustomHeader: Sized {
    fn to_ext_fields(&self, ext_fields: &mut ExtFields);
    fn from_ext_fields(ext_fields: &ExtFields) -> Result<Self>;
}

impl CustomHeader for () {
    fn to_ext_fields(&self, _: &mut ExtFields) {}
    fn from_ext_fields(_: &ExtFields) -> Result<Self> {
        Ok(())
    }
}
