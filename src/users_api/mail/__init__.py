"""Mail: messages built with the standard library, sent over SMTP or written as .eml files."""
