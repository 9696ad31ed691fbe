#!/usr/bin/env python3
"""Fail when modules of one crate import each other in a circle (issue 10: one
concern per file, layered). Reads `crate::` and `super::` paths outside
comments and unit tests; prints each circle and exits 1."""
import os,re,sys
from collections import defaultdict
def modname(root,path):
    rel=os.path.relpath(path,root)[:-3]
    parts=rel.split('/')
    if parts[-1] in ('mod','lib','main'): parts=parts[:-1]
    return '::'.join(parts) or 'crate'
bad=[]
os.chdir(os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))
for crate in sorted(os.listdir('crates')):
    root=f'crates/{crate}/src'
    files=[os.path.join(d,f) for d,_,fs in os.walk(root) for f in fs if f.endswith('.rs')]
    mods={modname(root,f):f for f in files}
    g=defaultdict(set)
    for m,f in mods.items():
        s=open(f).read()
        s="\n".join(l for l in s.split("\n") if not l.strip().startswith("//"))
        s=re.sub(r"#\[cfg\(test\)\]\s*mod tests\s*\{.*", "", s, flags=re.S)
        for ref in re.findall(r'crate::([a-z_][a-z0-9_]*(?:::[a-z_][a-z0-9_]*)*)', s):
            parts=ref.split('::')
            # longest prefix that is a module
            best=None
            for i in range(len(parts),0,-1):
                cand='::'.join(parts[:i])
                if cand in mods: best=cand;break
            if best and best!=m and not m.startswith(best+'::') and best!='crate': g[m].add(best)
        for ref in re.findall(r'super::([a-z_][a-z0-9_]*)', s):
            parent='::'.join(m.split('::')[:-1])
            cand=(parent+'::'+ref) if parent else ref
            if cand in mods and cand!=m: g[m].add(cand)
    # tarjan
    idx={};low={};st=[];on=set();out=[];c=[0]
    sys.setrecursionlimit(10000)
    def sc(v):
        idx[v]=low[v]=c[0];c[0]+=1;st.append(v);on.add(v)
        for w in g[v]:
            if w not in idx: sc(w);low[v]=min(low[v],low[w])
            elif w in on: low[v]=min(low[v],idx[w])
        if low[v]==idx[v]:
            comp=[]
            while True:
                w=st.pop();on.discard(w);comp.append(w)
                if w==v:break
            if len(comp)>1: out.append(comp)
    for v in list(mods):
        if v not in idx: sc(v)
    for comp in out:
        bad.append(f"{crate}: {' <-> '.join(sorted(comp))}")
if bad:
    print("import circles between modules:", *bad, sep="\n  ")
    sys.exit(1)
print("no import circle between the modules of any crate")
