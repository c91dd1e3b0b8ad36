"""The typed agents and their LLM layer.

One class per agent type, generic over its output model (`base.BaseAgent`):
`research` -> `ResearchReport`, `codebase_analyzer` -> `CodebaseReport`,
`frontend` and `backend` -> `CodeChange`. `registry.build_agents()` makes one of
each for the TeamLeader; `llm.LanguageModels` holds the models they use.
"""
