"""Members: signup, profile, referral codes, consent."""
