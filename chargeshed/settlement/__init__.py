"""Revenue-split agreements, settlement statements and their exports."""
