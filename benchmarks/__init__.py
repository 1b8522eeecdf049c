"""`make bench`: figures for the platform's hot paths. Reports numbers; never passes or fails."""
