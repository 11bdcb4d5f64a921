"""Reading: mail bytes in, an Extraction out (MIME, text, classification, fields, sheets)."""
