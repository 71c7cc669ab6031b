"""The Access pages of the team dashboard (applications, policies, groups, lists, service tokens, the policy tester,
the access log and settings). Thin views: form → service (with the member as actor) → redirect."""
