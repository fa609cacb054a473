//! Size limits of what the controller writes: condition messages, event notes and the
//! parts of worker messages are cut to a bound so a long error never makes a write fail.

/// Cuts `text` to at most `max` bytes on a character boundary.
pub fn truncate(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut cut = max;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::truncate;

    #[test]
    fn cuts_on_a_character_boundary() {
        assert_eq!(truncate("abcdef".to_owned(), 4), "abcd");
        assert_eq!(truncate("abc".to_owned(), 4), "abc");
        // "é" is two bytes: a cut inside it backs off to before it.
        assert_eq!(truncate("aé".to_owned(), 2), "a");
    }
}
