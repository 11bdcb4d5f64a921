"""The seams to the world and their implementations: Maildir/IMAP in, files/SMTP out."""
