"""One module per kind of page; each holds the view functions and their routes (`router`)."""
