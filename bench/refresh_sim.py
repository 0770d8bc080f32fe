#!/usr/bin/env python3
"""Simulate how token refreshes spread over time at one token endpoint (issue 13).

N credentials start together behind a GCRA pace (token_requests_per_second, burst 10);
each token lives L seconds and is refreshed at refresh_at of its lifetime (+-5%).
Prints, per strategy, the steady-state peak 1-second bucket, the mean, and peak/mean:
  N  plain +-5% jitter            A  first refresh uniform in [0, wait]
  B  first refresh from the backlog's end, capped     C  uniform after the backlog
  D  least-booked second of K draws in the window (what src/token/pace.rs does)
Usage: python3 bench/refresh_sim.py   (stdlib only, a few seconds)
"""
import random, heapq, sys
def sim(opt, N=1000, rate=50.0, burst=10, L=60.0, r=0.8, T=180.0, seed=1):
    random.seed(seed)
    I=1/rate; tol=I*(burst-1)
    tat=[0.0]
    def turn(now):
        cur=max(tat[0],now); at=max(now,cur-tol); tat[0]=cur+I; return at
    # events: (time, cred, kind) kind: 'want' -> reserve turn -> fetch at turn
    ev=[(0.0,i,'want') for i in range(N)]
    heapq.heapify(ev)
    first={i:True for i in range(N)}
    reqs=[]
    while ev:
        t,i,k=heapq.heappop(ev)
        if t>T: break
        if k=='want':
            at=turn(t); heapq.heappush(ev,(at,i,'go'))
        else:
            reqs.append(t)
            wait=L*r*(1+0.05*random.uniform(-1,1))
            if first[i]:
                first[i]=False
                if opt=='A': wait=max(1,wait*random.random())
                elif opt=='B':
                    Q=max(t, tat[0]-tol); wait=min(wait, (Q-t)+random.random()*L*r)
                elif opt=='C':
                    Q=max(t, tat[0]-tol); wait=random.uniform(min(Q-t,wait),wait)
                elif opt=='N': pass
            heapq.heappush(ev,(t+wait,i,'want'))
    b=[0]*int(T+1)
    for x in reqs: b[int(x)]+=1
    ss=b[48:int(T)]
    m=sum(ss)/len(ss); return max(ss), m, max(ss)/m
for o in 'NABC':
    print(o, [tuple(round(v,2) for v in sim(o,seed=s)) for s in (1,2)])

def simD(N=1000, rate=50.0, burst=10, L=60.0, r=0.8, T=180.0, seed=1, K=8, first_mode='Q'):
    random.seed(seed)
    I=1/rate; tol=I*(burst-1)
    tat=[0.0]; load={}
    def turn(now):
        cur=max(tat[0],now); at=max(now,cur-tol); tat[0]=cur+I; return at
    def pick(lo,hi):
        best=None
        for _ in range(K):
            x=random.uniform(lo,hi); c=load.get(int(x),0)
            if best is None or c<best[0]: best=(c,x)
        load[int(best[1])]=best[0]+1
        return best[1]
    ev=[(0.0,i,'want') for i in range(N)]; heapq.heapify(ev)
    first={i:True for i in range(N)}; reqs=[]
    while ev:
        t,i,k=heapq.heappop(ev)
        if t>T: break
        if k=='want':
            at=turn(t); heapq.heappush(ev,(at,i,'go'))
        else:
            reqs.append(t)
            w=L*r
            if first[i]:
                first[i]=False
                Q=max(t+1, tat[0]-tol)
                lo=min(Q, t+w*0.95); hi=t+w*1.05
            else:
                lo=t+w*0.95; hi=t+w*1.05
            heapq.heappush(ev,(pick(lo,hi),i,'want'))
    b=[0]*int(T+1)
    for x in reqs: b[int(x)]+=1
    ss=b[48:int(T)]; m=sum(ss)/len(ss)
    b5=[sum(b[j:j+5]) for j in range(48,int(T)-5,5)]; m5=sum(b5)/len(b5)
    return max(ss), round(m,1), round(max(ss)/m,2), round(max(b5)/m5,2)
for K in (1,4,8,16):
    print('D K=',K,[simD(seed=s,K=K) for s in (1,2)])
