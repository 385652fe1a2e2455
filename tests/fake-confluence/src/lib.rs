//! A fake Confluence Cloud server.
