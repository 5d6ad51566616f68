//! A small bit set over role indices: role sets, inheritance closures.

/// A set of role indices. Indices beyond the stored words are absent, so an empty set
/// never allocates.
#[derive(Clone, Debug, Default)]
pub struct Bits(Vec<u64>);

impl Bits {
    pub fn contains(&self, i: u32) -> bool {
        let i = i as usize;
        self.0.get(i / 64).is_some_and(|w| w & (1 << (i % 64)) != 0)
    }

    pub fn insert(&mut self, i: u32) {
        let i = i as usize;
        let word = i / 64;
        if self.0.len() <= word {
            self.0.resize(word + 1, 0);
        }
        if let Some(w) = self.0.get_mut(word) {
            *w |= 1 << (i % 64);
        }
    }

    pub fn union_with(&mut self, other: &Bits) {
        if self.0.len() < other.0.len() {
            self.0.resize(other.0.len(), 0);
        }
        for (a, b) in self.0.iter_mut().zip(&other.0) {
            *a |= *b;
        }
    }

    /// The members in increasing order.
    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        self.0.iter().enumerate().flat_map(|(wi, &w)| {
            (0..64u32).filter_map(move |b| {
                if w & (1 << b) != 0 {
                    Some(wi as u32 * 64 + b)
                } else {
                    None
                }
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_operations() {
        let mut a = Bits::default();
        assert_eq!(a.iter().count(), 0);
        assert!(!a.contains(5));
        a.insert(5);
        a.insert(130);
        assert!(a.contains(5) && a.contains(130) && !a.contains(6));
        let mut b = Bits::default();
        b.insert(1);
        b.union_with(&a);
        assert_eq!(b.iter().collect::<Vec<_>>(), vec![1, 5, 130]);
    }
}
