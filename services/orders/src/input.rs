//! What input carries into the domain, parsed once at the edge: a value of these types is
//! valid by construction, so the code behind the API never checks it again. The e-mail
//! address is [`crate::email::CustomerEmail`].

/// How many units of a product an order line takes: 1 to 100 (the `order_items` CHECK).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quantity(i32);

impl Quantity {
    pub const MIN: i64 = 1;
    pub const MAX: i64 = 100;

    pub fn new(units: i64) -> Option<Self> {
        let units = i32::try_from(units).ok()?;
        (Self::MIN..=Self::MAX)
            .contains(&i64::from(units))
            .then_some(Self(units))
    }

    pub fn get(self) -> i32 {
        self.0
    }
}

/// An amount of money in the smallest unit of its currency (cents): 0 to 10^10, what a
/// catalog price may be (the `products` CHECK says not negative; the bound keeps any
/// order's total far from overflowing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cents(i64);

impl Cents {
    pub const MAX: i64 = 10_000_000_000;

    pub fn new(cents: i64) -> Option<Self> {
        (0..=Self::MAX).contains(&cents).then_some(Self(cents))
    }

    pub fn get(self) -> i64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_values_the_schema_accepts_are_made() {
        assert_eq!(Quantity::new(0), None);
        assert_eq!(Quantity::new(1).map(Quantity::get), Some(1));
        assert_eq!(Quantity::new(100).map(Quantity::get), Some(100));
        assert_eq!(Quantity::new(101), None);
        assert_eq!(Quantity::new(i64::from(i32::MAX) + 1), None);
        assert_eq!(Cents::new(-1), None);
        assert_eq!(Cents::new(0).map(Cents::get), Some(0));
        assert_eq!(Cents::new(Cents::MAX + 1), None);
    }
}
