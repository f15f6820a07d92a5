"""Streamlit pages of the planner's app: the only package that imports streamlit."""
