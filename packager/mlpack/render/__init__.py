"""Every generated text file of an artifact: what templates may know (context.py: the
RenderContext built from a manifest), every value they write beyond the target's and the
model's own data, decided once in Python (facts.py, with the autoscaler and delivery-engine
tables of delivery.py), the sandboxed Jinja rendering itself (templates.py), and
`mlpack iac`, which renders the infrastructure code again from the manifest (iac.py)."""
