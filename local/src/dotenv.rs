//! `.env` in the working directory, as `.env.example` suggests: read before anything
//! reads the environment, each variable it sets taken only when the environment does not
//! set it already (the environment wins).

use std::path::PathBuf;

/// Reads `./.env` when there is one: its absolute path, or None; an error names the file
/// and what is wrong with it.
pub fn load() -> Result<Option<PathBuf>, String> {
    let path = crate::startup::absolute(std::path::Path::new(".env"));
    match dotenvy::from_path(&path) {
        Ok(()) => Ok(Some(path)),
        Err(dotenvy::Error::Io(error)) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        // The line's number, not its text: it may hold a secret.
        Err(dotenvy::Error::LineParse(bad, _)) => {
            let number = std::fs::read_to_string(&path)
                .ok()
                .and_then(|text| text.lines().position(|line| line.trim() == bad.trim()))
                .map(|index| format!("line {}", index + 1))
                .unwrap_or_else(|| "a line".to_owned());
            Err(format!(
                "{} cannot be read: {number} is not NAME=value (see .env.example)",
                path.display()
            ))
        }
        Err(error) => Err(format!("{} cannot be read: {error}", path.display())),
    }
}
