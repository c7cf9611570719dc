"""Heatmap: roll-ups of check-ins and claim outcomes per H3 cell, and the queries ops read (above every domain)."""
